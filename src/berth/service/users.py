"""Users, their platform API keys and their passwords."""

from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from berth.auth import Principal
from berth.db.models import Membership, PlatformKey, Tenant, User, WebSession, utcnow
from berth.descriptions import control_character_problem
from berth.errors import Conflict, Forbidden, InvalidInput, NotFound
from berth.names import name_key, normalize_name
from berth.secrets import hash_key, new_platform_key
from berth.service import audit
from berth.service.common import (
    MIN_KEY_ID_PREFIX_LENGTH,
    has_only_id_characters,
    looks_like_id,
    looks_like_id_prefix,
    new_id,
)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
KEY_PREFIX_LENGTH = 14
MAX_KEY_DESCRIPTION_LENGTH = 200
ME = "me"

_hasher = PasswordHasher()


def find_user(session: Session, principal: Principal, ref: str) -> User:
    """Find a user by name or ID. Others than OrgAdmins see themselves and the members
    of their active tenant."""
    ref = ref.strip()
    if ref == ME:
        user = session.get(User, principal.user_id)
    elif looks_like_id(ref):
        user = session.get(User, ref.lower())
    else:
        user = session.scalar(select(User).where(User.username_key == name_key(ref)))
    if user is None or not _can_see(session, principal, user):
        raise NotFound(
            f"user '{ref}' not found among the users you can see; an OrgAdmin creates "
            "users with `berth user create` or POST /api/v1/users",
            field="user",
        )
    return user


def find_user_for_membership(
    session: Session, principal: Principal, tenant: Tenant, ref: str
) -> User:
    """Find any user by name or ID, for a TenantAdmin of `tenant` who adds members."""
    principal.require_tenant_admin(tenant.id, "change members of a tenant")
    ref = ref.strip()
    if ref == ME:
        user = session.get(User, principal.user_id)
    elif looks_like_id(ref):
        user = session.get(User, ref.lower())
    else:
        user = session.scalar(select(User).where(User.username_key == name_key(ref)))
    if user is None:
        raise NotFound(f"user '{ref}' not found", field="user")
    return user


def _can_see(session: Session, principal: Principal, user: User) -> bool:
    if principal.is_org_admin or user.id == principal.user_id:
        return True
    if principal.tenant_id is None:
        return False
    return session.get(Membership, (user.id, principal.tenant_id)) is not None


def list_users(
    session: Session, principal: Principal, limit: int, offset: int
) -> tuple[list[User], int]:
    query = select(User)
    if not principal.is_org_admin:
        members = select(Membership.user_id).where(
            Membership.tenant_id == principal.active_tenant_id
        )
        query = query.where(User.id.in_(members))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(User.username_key).limit(limit).offset(offset))
    return list(rows), total


def _check_username(username: str) -> str:
    username = normalize_name(username, field="username")
    if name_key(username) == ME:
        raise InvalidInput(
            f"user name '{username}' is reserved: '{ME}' names the caller; choose another",
            field="username",
        )
    return username


def _check_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long",
            field="password",
        )
    return password


@dataclass
class NewUser:
    username: str
    password: str | None = None
    is_org_admin: bool = False
    # Tenant (name or ID) and role to add the user to at once.
    tenant: Tenant | None = None
    role: str | None = None
    create_key: bool = False


def create_user(session: Session, principal: Principal, new: NewUser) -> tuple[User, str | None]:
    """Create a user; returns the user and, when asked, a first platform key (shown once)."""
    principal.require_org_admin("create users")
    username = _check_username(new.username)
    if session.scalar(select(User.id).where(User.username_key == name_key(username))):
        raise Conflict(f"a user named '{username}' already exists", field="username")
    user = User(
        id=new_id(),
        username=username,
        username_key=name_key(username),
        is_org_admin=new.is_org_admin,
        password_hash=_hasher.hash(_check_password(new.password)) if new.password else None,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        principal,
        "user.created",
        "user",
        user.id,
        username,
        is_org_admin=new.is_org_admin,
    )

    key = None
    if new.create_key:
        _row, key = create_platform_key(session, principal, user, "created with the user")
    return user, key


def _lock_org_admins(session: Session) -> None:
    """Lock the rows of the enabled OrgAdmins until the transaction ends (PostgreSQL).

    Two changes that each disable or demote an OrgAdmin then run one after the other, in
    the same order of rows, so the second one counts what the first one left.
    """
    session.scalars(
        select(User.id)
        .where(User.is_org_admin.is_(True), User.disabled.is_(False))
        .order_by(User.id)
        .with_for_update()
    ).all()


def _keep_an_org_admin(session: Session, user: User, field: str) -> None:
    """Raise Conflict when no enabled OrgAdmin is left after the change; the caller's
    rollback (run_transaction's, in the API) undoes the change.

    Counted after the change is written: on SQLite the write takes the write lock, so a
    change that committed just before shows here, and on PostgreSQL _lock_org_admins made
    such a change finish first. Two OrgAdmins who disable each other at the same moment
    therefore cannot both succeed.
    """
    session.flush()
    enabled = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.is_org_admin.is_(True), User.disabled.is_(False))
    )
    if not enabled:
        raise Conflict(
            f"cannot disable or demote '{user.username}': it is the last enabled OrgAdmin, "
            "and without one nobody can manage the organization; make another user an "
            "OrgAdmin first",
            field=field,
        )


def update_user(
    session: Session,
    principal: Principal,
    user: User,
    *,
    username: str | None = None,
    disabled: bool | None = None,
    is_org_admin: bool | None = None,
    password: str | None = None,
    default_tenant: Tenant | None = None,
) -> User:
    is_self = user.id == principal.user_id
    if (username is not None or disabled is not None or is_org_admin is not None) and not (
        principal.is_org_admin
    ):
        raise Forbidden("only an OrgAdmin may rename, disable or promote users")
    if (password is not None or default_tenant is not None) and not (
        is_self or principal.is_org_admin
    ):
        raise Forbidden("you may change only your own password and default tenant")
    if is_self and (disabled or is_org_admin is False):
        raise InvalidInput(
            "you cannot disable yourself or drop your own OrgAdmin flag; ask another OrgAdmin",
            field="disabled" if disabled else "is_org_admin",
        )

    takes_an_org_admin = (disabled or is_org_admin is False) and (
        user.is_org_admin and not user.disabled
    )
    if takes_an_org_admin:
        _lock_org_admins(session)

    if username is not None:
        username = _check_username(username)
        clash = session.scalar(
            select(User.id).where(User.username_key == name_key(username), User.id != user.id)
        )
        if clash:
            raise Conflict(f"a user named '{username}' already exists", field="username")
        if username != user.username:
            audit.record(
                session,
                principal,
                "user.renamed",
                "user",
                user.id,
                username,
                old_name=user.username,
            )
            user.username, user.username_key = username, name_key(username)
    if disabled is not None and disabled != user.disabled:
        user.disabled = disabled
        if disabled:
            # Sessions end for good, so that enabling the user later does not revive a
            # cookie that someone else may hold. Platform keys are left alone, so they work
            # again once the user is enabled. An OrgAdmin revokes a key that may have leaked.
            ended = end_web_sessions(session, user)
            audit.record(
                session,
                principal,
                "user.disabled",
                "user",
                user.id,
                user.username,
                ended_web_sessions=ended,
            )
        else:
            audit.record(session, principal, "user.enabled", "user", user.id, user.username)
    if is_org_admin is not None and is_org_admin != user.is_org_admin:
        user.is_org_admin = is_org_admin
        audit.record(
            session,
            principal,
            "user.org_admin_changed",
            "user",
            user.id,
            user.username,
            is_org_admin=is_org_admin,
        )
    if takes_an_org_admin:
        _keep_an_org_admin(session, user, "disabled" if disabled else "is_org_admin")
    if password is not None:
        user.password_hash = _hasher.hash(_check_password(password))
        # Anyone who knew the old password may have signed in, so the user's web sessions
        # end. Users who change their own password keep the session they changed it in.
        # Platform keys stay valid, because they are separate credentials.
        keep = principal.web_session_id if is_self else None
        ended = end_web_sessions(session, user, keep=keep)
        audit.record(
            session,
            principal,
            "user.password_changed",
            "user",
            user.id,
            user.username,
            ended_web_sessions=ended,
        )
    if default_tenant is not None:
        if session.get(Membership, (user.id, default_tenant.id)) is None:
            raise InvalidInput(
                f"user '{user.username}' is not a member of tenant '{default_tenant.name}'",
                field="default_tenant",
            )
        if default_tenant.disabled:
            raise InvalidInput(
                f"tenant '{default_tenant.name}' is disabled, so it cannot be the default "
                f"tenant of user '{user.username}'; an OrgAdmin can enable it with `berth "
                f"tenant enable {default_tenant.name}`, or choose another tenant",
                field="default_tenant",
            )
        user.default_tenant_id = default_tenant.id
    return user


def end_web_sessions(session: Session, user: User, keep: str | None = None) -> int:
    """Delete the web sessions of `user`, except the one whose ID is `keep`, and return
    how many were deleted. Browsers with those session cookies must sign in again."""
    conditions = [WebSession.user_id == user.id]
    if keep is not None:
        conditions.append(WebSession.id != keep)
    ended = session.scalar(select(func.count()).select_from(WebSession).where(*conditions))
    session.execute(delete(WebSession).where(*conditions))
    return ended or 0


def verify_password(user: User, password: str) -> bool:
    if not user.password_hash:
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# -- platform API keys ------------------------------------------------------------


def _require_self_or_org_admin(principal: Principal, user: User, action: str) -> None:
    if user.id != principal.user_id and not principal.is_org_admin:
        raise Forbidden(f"you may {action} only your own platform API keys")


def create_platform_key(
    session: Session, principal: Principal, user: User, description: str
) -> tuple[PlatformKey, str]:
    _require_self_or_org_admin(principal, user, "create")
    row, key = _new_platform_key(session, user, description)
    audit.record(
        session,
        principal,
        "platform_key.created",
        "platform_key",
        row.id,
        row.description,
        owner=user.username,
    )
    return row, key


def _new_platform_key(session: Session, user: User, description: str) -> tuple[PlatformKey, str]:
    description = description.strip()
    if len(description) > MAX_KEY_DESCRIPTION_LENGTH:
        raise InvalidInput(
            f"description is longer than {MAX_KEY_DESCRIPTION_LENGTH} characters",
            field="description",
        )
    problem = control_character_problem(description)
    if problem is not None:
        raise InvalidInput(f"description {problem}", field="description")
    key = new_platform_key()
    row = PlatformKey(
        id=new_id(),
        user_id=user.id,
        key_hash=hash_key(key),
        key_prefix=key[:KEY_PREFIX_LENGTH],
        description=description,
    )
    session.add(row)
    return row, key


def create_recovery_key(
    session: Session, user_ref: str, description: str, operator: str
) -> tuple[User, PlatformKey, str]:
    """Create a platform API key for an enabled OrgAdmin, with no caller to check.

    Only `berth admin create-key` calls this. It runs on the server machine with the
    database settings of `berth up`, so the person who runs it can change the database
    anyway.
    `operator` names the operating-system user who ran it, for the audit entry.
    """
    ref = user_ref.strip()
    if looks_like_id(ref):
        user = session.get(User, ref.lower())
    else:
        user = session.scalar(select(User).where(User.username_key == name_key(ref)))
    if user is None:
        raise NotFound(f"user '{ref}' not found; {_org_admins_hint(session)}", field="user")
    if not user.is_org_admin:
        raise Forbidden(
            f"user '{user.username}' is not an OrgAdmin, and this command creates keys only "
            f"for OrgAdmins; {_org_admins_hint(session)}. With a key of one of them, "
            f"`berth platform-key create --user {user.username}` creates a key for any user"
        )
    if user.disabled:
        raise Conflict(
            f"user '{user.username}' is disabled, so the server would reject a key of theirs; "
            f"{_org_admins_hint(session)}. Create a key for one of them, then enable this "
            f"user with `berth user enable {user.username}`",
            field="user",
        )
    row, key = _new_platform_key(session, user, description)
    audit.record_without_actor(
        session,
        "platform_key.created",
        "platform_key",
        row.id,
        row.description,
        owner=user.username,
        command="berth admin create-key",
        operator=operator,
    )
    return user, row, key


def _org_admins_hint(session: Session) -> str:
    names = session.scalars(
        select(User.username)
        .where(User.is_org_admin.is_(True), User.disabled.is_(False))
        .order_by(User.username_key)
    ).all()
    if not names:
        return "the database contains no enabled OrgAdmin"
    return "the enabled OrgAdmins are " + ", ".join(f"'{name}'" for name in names)


def list_platform_keys(session: Session, principal: Principal, user: User) -> list[PlatformKey]:
    _require_self_or_org_admin(principal, user, "list")
    return list(
        session.scalars(
            select(PlatformKey)
            .where(PlatformKey.user_id == user.id)
            .order_by(PlatformKey.created_at, PlatformKey.id)
        )
    )


def find_platform_key(
    session: Session, principal: Principal, user: User, ref: str, action: str
) -> PlatformKey:
    """Find a key of `user` by its ID or a unique start of it, after checking that the
    caller may `action` (a verb such as "revoke") the user's keys."""
    _require_self_or_org_admin(principal, user, action)
    return _find_platform_key(session, principal, user, ref)


def revoke_platform_key(
    session: Session, principal: Principal, user: User, key_id: str
) -> PlatformKey:
    """Revoke a key of `user`; a key that is revoked already stays as it is."""
    row = find_platform_key(session, principal, user, key_id, "revoke")
    # Only OrgAdmins may revoke an OrgAdmin's keys, and the caller keeps the key or the
    # password it signed in with, so this check alone keeps an OrgAdmin with a way in.
    if row.id == principal.platform_key_id and row.revoked_at is None:
        raise Conflict(
            f"platform API key {row.id} authenticates this request, and revoking it could "
            "leave you with no way to sign in; create another key with `berth platform-key "
            "create`, use that key (for example after `berth login`), then revoke this one",
            field="key",
        )
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(
            session,
            principal,
            "platform_key.revoked",
            "platform_key",
            row.id,
            row.description,
            owner=user.username,
        )
    return row


def _find_platform_key(session: Session, principal: Principal, user: User, ref: str) -> PlatformKey:
    """Find a key of `user` by its ID or by a unique start of its ID.

    An ID start needs MIN_KEY_ID_PREFIX_LENGTH characters, as for endpoint keys.
    """
    ref = ref.strip()
    key_ref = ref.lower()
    if looks_like_id(key_ref):
        found = session.get(PlatformKey, key_ref)
        if found is None or found.user_id != user.id:
            raise NotFound(_missing_key_message(principal, user, ref, found), field="key")
        return found

    if not looks_like_id_prefix(key_ref):
        if has_only_id_characters(key_ref):
            raise NotFound(
                f"'{ref}' is too short to name a platform API key; give at least "
                f"{MIN_KEY_ID_PREFIX_LENGTH} characters of the key's ID, as "
                "`berth platform-key list` shows it",
                field="key",
            )
        # The value may be the key itself, which must not be echoed.
        raise NotFound(
            f"platform API key with the value given not found among the keys of user "
            f"'{user.username}'; pass a key ID from `berth platform-key list`",
            field="key",
        )

    starts_with = PlatformKey.id.startswith(key_ref)
    rows = session.scalars(
        select(PlatformKey)
        .where(PlatformKey.user_id == user.id, starts_with)
        .order_by(PlatformKey.id)
    ).all()
    if len(rows) > 1:
        ids = ", ".join(row.id for row in rows)
        raise Conflict(
            f"platform API key ID '{ref}' is the start of several keys' IDs of user "
            f"'{user.username}' ({ids}); give more characters of the ID",
            field="key",
        )
    if not rows:
        # For the OrgAdmin's hint: the key of another user that the start names, if one.
        others = session.scalars(select(PlatformKey).where(starts_with).limit(2)).all()
        other = others[0] if len(others) == 1 else None
        raise NotFound(_missing_key_message(principal, user, ref, other), field="key")
    return rows[0]


def _missing_key_message(
    principal: Principal, user: User, key_id: str, row: PlatformKey | None
) -> str:
    message = f"platform API key {key_id} not found among the keys of user '{user.username}'"
    # Only an OrgAdmin may manage another user's keys, so only an OrgAdmin gets the hint.
    if not principal.is_org_admin:
        return message
    if row is not None:
        owner = row.user.username
        return (
            f"{message}; it belongs to user '{owner}', so name that user: "
            f"`berth platform-key revoke {key_id} --user {owner}`"
        )
    return f"{message}; to revoke another user's key, name the user with --user NAME"
