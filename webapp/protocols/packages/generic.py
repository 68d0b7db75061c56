"""Generic packages: any file, PUT and GET by package name, version and file name."""
from flask import jsonify, request

from ...services import packages
from ...services.errors import Invalid, NotFound
from ...services.policy import Action
from .common import PackageFormat, bp, error, project_for, receive_body, send_package_file

FORMAT = PackageFormat("generic")  # every kind; errors as GitLab JSON

PREFIX = "/api/v4/projects/<path:ref>/packages/generic/<package_name>/<package_version>/<file_name>"


@bp.route(PREFIX, methods=["PUT"])
def generic_upload(ref, package_name, package_version, file_name):
    project, _ = project_for(Action.WRITE_PACKAGE, ref, FORMAT)
    try:
        packages.check_generic(package_name, package_version, file_name)
    except Invalid as exc:
        error(400, str(exc))
    upload = receive_body(FORMAT)
    row = packages.add_file(project, "generic", package_name, package_version, upload,
                            file_name=file_name)
    if request.args.get("select") == "package_file":
        # GitLab's option for scripts that want the stored file's details back.
        return jsonify(id=row.id, package_id=row.package_id, file_name=row.file_name,
                       size=row.size, file_sha256=row.file_sha256,
                       created_at=row.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"), 201
    return jsonify(message="201 Created"), 201


@bp.route(PREFIX, methods=["GET"])
def generic_download(ref, package_name, package_version, file_name):
    project, _ = project_for(Action.READ_PACKAGE, ref, FORMAT)
    try:
        row = packages.latest_file(project, "generic", package_name, package_version, file_name)
    except NotFound as exc:
        error(404, str(exc))
    return send_package_file(row)

