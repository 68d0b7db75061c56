"""The variables a CI job of a project receives, as GitLab's runner job payload lists them."""
from datetime import datetime
from typing import Optional

from ..models import Project
from . import deploy_tokens

# The registry beside Gatehouse when REGISTRY_URL is not configured.
DEFAULT_REGISTRY = "127.0.0.1:5050"


def _variable(key: str, value: str, *, public: bool = True, masked: bool = False) -> dict:
    return {"key": key, "value": value, "public": public, "masked": masked}


def job_variables(project: Project, *, external_url: str, registry: str,
                  now: Optional[datetime] = None) -> list[dict]:
    """The project's predefined CI variables, with the deploy-token pair when it exists.

    Raises encryption.DecryptionError when the CI token cannot be decrypted: a job must
    not silently run without the credentials it was promised.
    """
    external_url = external_url.rstrip("/")
    variables = [
        _variable("CI_SERVER_URL", external_url),
        _variable("CI_PROJECT_ID", str(project.id)),
        _variable("CI_PROJECT_PATH", project.full_path),
        # Without credentials: the job authenticates with CI_DEPLOY_USER/PASSWORD.
        _variable("CI_REPOSITORY_URL", f"{external_url}/{project.full_path}.git"),
        _variable("CI_REGISTRY", registry),
        _variable("CI_REGISTRY_IMAGE", f"{registry}/{project.full_path}".lower()),
    ]
    token = deploy_tokens.find_ci_token(project, now=now)
    if token is not None:
        variables.append(_variable("CI_DEPLOY_USER", token.username))
        variables.append(_variable("CI_DEPLOY_PASSWORD", deploy_tokens.reveal_ci_secret(token),
                                   public=False, masked=True))
    return variables


def sh_quote(value: str) -> str:
    """Quote for POSIX sh: inside single quotes nothing is special but the quote itself."""
    return "'" + value.replace("'", "'\\''") + "'"


def dotenv(variables: list[dict]) -> str:
    """`KEY='value'` lines that `sh` can source (`set -a; . ./ci.env`)."""
    return "".join(f"{v['key']}={sh_quote(v['value'])}\n" for v in variables)
