"""The one access policy, row by row (DESIGN.md's table)."""
import pytest

from webapp.services import accounts, credentials
from webapp.services.policy import ANONYMOUS, Action, Principal, PrincipalKind, can, visible

A = Action


@pytest.fixture
def world(ctx, make):
    make.project("tanuki/infra/deploy")
    make.project("tanuki/website", visibility="public")
    make.project("tanuki/handbook", visibility="internal")
    make.project("other/secret")
    return {p: accounts.find_project(p) for p in
            ("tanuki/infra/deploy", "tanuki/website", "tanuki/handbook", "other/secret")}


def user_with(make, role, path="tanuki"):
    user = make.user()
    if role:
        make.member(path, user, role)
    return credentials.for_user(accounts.find_user(user.username))


def token(scopes, project_id=None, group_id=None):
    return Principal("deploy_token", name="t", token_id=1, scopes=frozenset(scopes),
                     project_id=project_id, group_id=group_id)


USER_TABLE = [
    # action, lowest role that may, on a private project
    (A.READ_PROJECT, "guest"),
    (A.READ_REPOSITORY, "reporter"),
    (A.PUSH_REPOSITORY, "developer"),
    (A.READ_REGISTRY, "reporter"),
    (A.WRITE_REGISTRY, "developer"),
    (A.READ_PACKAGE, "reporter"),
    (A.WRITE_PACKAGE, "developer"),
    (A.MANAGE_DEPLOY_TOKENS, "maintainer"),
    (A.DELETE_REGISTRY, "maintainer"),
    (A.FORCE_UNLOCK_LFS, "maintainer"),
]
ROLES = ["guest", "reporter", "developer", "maintainer", "owner"]


@pytest.mark.parametrize("action, lowest", USER_TABLE)
def test_user_levels_inherited_from_ancestor_groups(world, make, action, lowest):
    project = world["tanuki/infra/deploy"]
    for role in ROLES:
        me = user_with(make, role)
        decision = can(me, action, project)
        expected = ROLES.index(role) >= ROLES.index(lowest)
        assert decision.allowed is expected, (role, action)
        if not expected:
            assert decision.status == 403


@pytest.mark.parametrize("action, lowest", USER_TABLE)
def test_project_membership_counts_too(world, make, action, lowest):
    me = user_with(make, lowest, path="tanuki/infra/deploy")
    assert can(me, action, world["tanuki/infra/deploy"])


def test_highest_level_along_the_ancestry_wins(world, make):
    user = make.user()
    make.member("tanuki", user, "reporter")
    make.member("tanuki/infra", user, "maintainer")
    make.member("tanuki/infra/deploy", user, "guest")
    me = credentials.for_user(accounts.find_user(user.username))
    assert can(me, A.MANAGE_DEPLOY_TOKENS, world["tanuki/infra/deploy"])
    assert not can(me, A.MANAGE_DEPLOY_TOKENS, accounts.find_group("tanuki"))


def test_membership_of_a_child_group_gives_nothing_above(world, make):
    me = user_with(make, "owner", path="tanuki/infra")
    assert not can(me, A.READ_PROJECT, world["other/secret"])
    assert can(me, A.MANAGE_DEPLOY_TOKENS, world["tanuki/infra/deploy"])
    assert not can(me, A.MANAGE_DEPLOY_TOKENS, accounts.find_group("tanuki"))


def test_admin_may_do_everything_a_user_can(world, make):
    admin = make.user(admin=True)
    me = credentials.for_user(accounts.find_user(admin.username))
    for action, _ in USER_TABLE:
        assert can(me, action, world["other/secret"])


def test_non_member_cannot_see_a_private_project(world, make):
    me = user_with(make, None)
    decision = can(me, A.READ_REPOSITORY, world["other/secret"])
    assert (decision.allowed, decision.status) == (False, 404)


def test_anonymous_is_asked_for_credentials_on_private_and_unknown_alike(world):
    private = can(ANONYMOUS, A.READ_REPOSITORY, world["other/secret"])
    unknown = can(ANONYMOUS, A.READ_REPOSITORY, None)
    assert (private.allowed, private.status) == (unknown.allowed, unknown.status) == (False, 401)


def test_unknown_target_is_not_found_for_the_signed_in(world, make):
    assert can(user_with(make, None), A.READ_PROJECT, None).status == 404


@pytest.mark.parametrize("action", [A.READ_PROJECT, A.READ_REPOSITORY, A.READ_REGISTRY, A.READ_PACKAGE])
def test_public_project_reads_are_open_to_anyone(world, action):
    assert can(ANONYMOUS, action, world["tanuki/website"])


@pytest.mark.parametrize("action", [A.PUSH_REPOSITORY, A.WRITE_REGISTRY, A.WRITE_PACKAGE,
                                    A.MANAGE_DEPLOY_TOKENS, A.DELETE_REGISTRY,
                                    A.FORCE_UNLOCK_LFS])
def test_public_project_writes_need_a_member(world, make, action):
    assert can(ANONYMOUS, action, world["tanuki/website"]).status == 401
    assert can(user_with(make, None), action, world["tanuki/website"]).status == 403


def test_internal_project_is_readable_by_any_signed_in_user_only(world, make):
    assert can(user_with(make, None), A.READ_REPOSITORY, world["tanuki/handbook"])
    assert can(ANONYMOUS, A.READ_REPOSITORY, world["tanuki/handbook"]).status == 401


TOKEN_TABLE = [
    (A.READ_REPOSITORY, {"read_repository"}),
    (A.PUSH_REPOSITORY, set()),
    (A.READ_REGISTRY, {"read_registry"}),
    (A.WRITE_REGISTRY, {"write_registry"}),
    (A.READ_PACKAGE, {"read_package_registry", "write_package_registry"}),
    (A.WRITE_PACKAGE, {"write_package_registry"}),
    (A.MANAGE_DEPLOY_TOKENS, set()),
    (A.DELETE_REGISTRY, set()),
    (A.FORCE_UNLOCK_LFS, set()),
    (A.READ_CI_VARIABLES, set()),
]
ALL_SCOPES = ["read_repository", "read_registry", "write_registry", "read_package_registry",
              "write_package_registry"]


@pytest.mark.parametrize("action, allowing", TOKEN_TABLE)
@pytest.mark.parametrize("scope", ALL_SCOPES)
def test_deploy_token_scope_to_action(world, action, allowing, scope):
    project = world["tanuki/infra/deploy"]
    decision = can(token({scope}, project_id=project.id), action, project)
    assert decision.allowed is (scope in allowing)
    if not decision.allowed:
        assert decision.status == 403


def test_deploy_token_with_every_scope_still_cannot_push_or_manage(world):
    project = world["tanuki/infra/deploy"]
    every = token(ALL_SCOPES, project_id=project.id)
    assert not can(every, A.PUSH_REPOSITORY, project)
    assert not can(every, A.MANAGE_DEPLOY_TOKENS, project)


def test_deploy_token_for_another_project_learns_nothing(world):
    mine, theirs = world["tanuki/infra/deploy"], world["other/secret"]
    decision = can(token(ALL_SCOPES, project_id=mine.id), A.READ_REPOSITORY, theirs)
    assert (decision.allowed, decision.status) == (False, 404)


def test_deploy_token_does_not_reach_public_projects_outside_it(world):
    mine, public = world["tanuki/infra/deploy"], world["tanuki/website"]
    assert can(token(ALL_SCOPES, project_id=mine.id), A.READ_REPOSITORY, public).status == 404


def test_group_token_reaches_projects_two_subgroups_down(world):
    tanuki = accounts.find_group("tanuki")
    deep = world["tanuki/infra/deploy"]
    assert can(token({"read_repository"}, group_id=tanuki.id), A.READ_REPOSITORY, deep)
    assert can(token({"read_repository"}, group_id=tanuki.id), A.READ_REPOSITORY,
               world["other/secret"]).status == 404


def test_runner_reads_only_its_own_projects_variables(world):
    mine, theirs = world["tanuki/infra/deploy"], world["other/secret"]
    runner = Principal(PrincipalKind.RUNNER, project_id=mine.id)
    assert can(runner, A.READ_CI_VARIABLES, mine)
    assert can(runner, A.READ_CI_VARIABLES, theirs).status == 404
    assert can(runner, A.READ_REPOSITORY, mine).status == 403


def test_users_never_read_ci_variables(world, make):
    assert not can(user_with(make, "owner"), A.READ_CI_VARIABLES, world["tanuki/infra/deploy"])


def test_group_is_visible_to_whoever_sees_something_inside(world, make):
    me = user_with(make, "reporter", path="tanuki/infra/deploy")
    assert visible(me, accounts.find_group("tanuki"))
    assert not visible(me, accounts.find_group("other"))
    assert visible(ANONYMOUS, accounts.find_group("tanuki"))  # holds a public project
    assert not visible(ANONYMOUS, accounts.find_group("other"))


def pat(me: Principal, *scopes) -> Principal:
    return Principal("personal_access_token", name=me.name, user_id=me.user_id,
                     is_admin=me.is_admin, token_id=1, scopes=frozenset(scopes))


@pytest.mark.parametrize("action", [A.READ_PROJECT, A.READ_REPOSITORY, A.READ_REGISTRY,
                                    A.READ_PACKAGE, A.MANAGE_DEPLOY_TOKENS])
def test_read_api_token_reads_what_its_user_may(world, make, action):
    me = user_with(make, "owner")
    assert can(pat(me, "read_api"), action, world["tanuki/infra/deploy"])


@pytest.mark.parametrize("action", [A.PUSH_REPOSITORY, A.WRITE_REGISTRY, A.WRITE_PACKAGE])
def test_writing_with_a_personal_access_token_needs_api(world, make, action):
    me = user_with(make, "owner")
    project = world["tanuki/infra/deploy"]
    assert can(pat(me, "api"), action, project)
    decision = can(pat(me, "read_api"), action, project)
    assert (decision.allowed, decision.status) == (False, 403)
    assert "api scope" in decision.reason


def test_personal_access_token_never_exceeds_its_user(world, make):
    me = user_with(make, "reporter")
    assert not can(pat(me, "api"), A.WRITE_PACKAGE, world["tanuki/infra/deploy"])
    assert can(pat(me, "api"), A.WRITE_PACKAGE, world["other/secret"]).status == 404
