//! Organizations, their memberships (roles, deactivation, activity) and invitation links.
//! Every role change goes through [`set_member`] or [`set_roles_bulk`], which apply the
//! escalation rules of [`authz::check_grant`] inside the transaction that makes the change,
//! and audit refusals as well as changes.

use serde::Serialize;
use serde_json::json;

use super::{
    Db,
    audit::{Prepared, audit},
    format_micros, now_micros,
    users::{self, MEMBER_COLUMNS, MemberRow, NewUser, UserView},
    with_read, with_tx,
};
use crate::{
    auth,
    authz::{self, Actor, Permission, Role},
    error::{ApiError, ApiResult, ErrorCode},
};

/// An organization as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrganizationView {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Slug used by the admin API (the custom resource's name), if any.
    pub slug: Option<String>,
    /// The custom resource that declares the organization, if any.
    pub managed_by: Option<String>,
    /// Days audit entries are kept (0 = forever).
    pub audit_retention_days: i64,
    /// ISO creation time.
    pub created_at: String,
    /// Product name the UI shows instead of "Verity" ("" = not set).
    pub product_name: String,
    /// Logo shown in the UI's header, a `data:image/…;base64,…` URL ("" = none).
    pub logo: String,
    /// Accent colour of the UI's pages, `#rrggbb` ("" = the default).
    pub accent_color: String,
    /// Where a sign-in lands instead of `/projects`: a path on this server ("" = `/projects`).
    pub login_redirect_url: String,
}

/// The branding of an organization (ADR 0045); empty strings are "not set".
#[derive(Debug, Clone, Default, Serialize)]
pub struct Branding {
    /// Product name.
    pub product_name: String,
    /// Logo as a data URL.
    pub logo: String,
    /// Accent colour, `#rrggbb`.
    pub accent_color: String,
    /// Landing path after sign-in.
    pub login_redirect_url: String,
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: i64,
    title: String,
    slug: Option<String>,
    managed_by: Option<String>,
    audit_retention_days: i64,
    created_at: i64,
    brand_name: String,
    brand_logo: String,
    brand_color: String,
    login_redirect: String,
}

/// The columns of [`OrgRow`], of `organization o`.
const ORG_COLUMNS: &str = "o.id, o.title, o.slug, o.managed_by, o.audit_retention_days, o.created_at, \
     o.brand_name, o.brand_logo, o.brand_color, o.login_redirect";

impl OrgRow {
    fn view(self) -> OrganizationView {
        OrganizationView {
            id: self.id,
            title: self.title,
            slug: self.slug,
            managed_by: self.managed_by,
            audit_retention_days: self.audit_retention_days,
            created_at: format_micros(self.created_at),
            product_name: self.brand_name,
            logo: self.brand_logo,
            accent_color: self.brand_color,
            login_redirect_url: self.login_redirect,
        }
    }
}

impl OrganizationView {
    /// The organization's branding.
    pub fn branding(&self) -> Branding {
        Branding {
            product_name: self.product_name.clone(),
            logo: self.logo.clone(),
            accent_color: self.accent_color.clone(),
            login_redirect_url: self.login_redirect_url.clone(),
        }
    }
}

/// The branding of organization `org_id` (default when there is no such organization). Public:
/// the sign-in page of an organization's link shows it before anyone signs in.
pub async fn branding(db: &Db, org_id: i64) -> ApiResult<Branding> {
    let row: Option<OrgRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ORG_COLUMNS} from organization o where o.id = $1"
        ))
        .bind(org_id)
        .fetch_optional(conn)
        .await?
    });
    Ok(row.map(|r| r.view().branding()).unwrap_or_default())
}

/// Largest logo accepted, in bytes of image (the page carries it inline as a data URL).
pub const MAX_LOGO_BYTES: usize = 64 * 1024;

/// Whether `to` is a path on this server that a browser cannot read as another site: one
/// leading `/` (not `//`), no backslash, and no control character or whitespace (browsers drop
/// tabs and line breaks inside a URL, so `/<tab>/evil.example` would become `//evil.example`).
pub fn is_same_site_path(to: &str) -> bool {
    to.starts_with('/')
        && !to.starts_with("//")
        && !to.contains('\\')
        && !to.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Checks a branding change: a short product name, a small PNG/JPEG/GIF/WebP logo, a readable
/// `#rrggbb` accent and a same-site landing path (`""` clears a field).
pub fn validate_branding(changes: &BrandingChanges) -> ApiResult<()> {
    if let Some(name) = &changes.product_name
        && (name.chars().count() > 50 || name.chars().any(char::is_control))
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "product_name",
            "must be at most 50 characters, without control characters",
        ));
    }
    if let Some(logo) = &changes.logo
        && !logo.is_empty()
    {
        validate_logo(logo)?;
    }
    if let Some(color) = &changes.accent_color
        && !color.is_empty()
    {
        validate_accent(color)?;
    }
    if let Some(to) = &changes.login_redirect_url
        && !to.is_empty()
        && (!is_same_site_path(to) || to.len() > 500)
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "login_redirect_url",
            "must be a path on this server such as /projects/3/data (starting with a single /, at most 500 characters); other sites are refused",
        ));
    }
    Ok(())
}

fn validate_logo(logo: &str) -> ApiResult<()> {
    use base64::Engine as _;
    let refuse = |why: &str| {
        Err(ApiError::field(
            ErrorCode::ValidationError,
            "logo",
            why.to_string(),
        ))
    };
    let Some((head, data)) = logo.split_once(',') else {
        return refuse("must be a data URL: data:image/png;base64,…");
    };
    let kind = match head {
        "data:image/png;base64" => "png",
        "data:image/jpeg;base64" => "jpeg",
        "data:image/gif;base64" => "gif",
        "data:image/webp;base64" => "webp",
        _ => {
            return refuse(
                "must be a PNG, JPEG, GIF or WebP image as data:image/<type>;base64,… (SVG is not accepted)",
            );
        }
    };
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(data) else {
        return refuse("the base64 after the comma does not decode");
    };
    if bytes.len() > MAX_LOGO_BYTES {
        return refuse(&format!(
            "is {} bytes; at most {MAX_LOGO_BYTES} bytes (64 KiB) are accepted",
            bytes.len()
        ));
    }
    let magic_ok = match kind {
        "png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "jpeg" => bytes.starts_with(&[0xff, 0xd8, 0xff]),
        "gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        _ => bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
    };
    if !magic_ok {
        return refuse(&format!("the data is not a {kind} image"));
    }
    Ok(())
}

/// `#rrggbb`. Any colour: the pages derive the text drawn on it and the shade of it used as
/// text so that both meet WCAG AA contrast (`http/ui/colour.rs`, ADR 0056).
fn validate_accent(color: &str) -> ApiResult<()> {
    let well_formed = color
        .strip_prefix('#')
        .is_some_and(|h| h.len() == 6 && h.chars().all(|c| c.is_ascii_hexdigit()));
    if !well_formed {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "accent_color",
            "must be a colour as #rrggbb, e.g. #0b57d0",
        ));
    }
    Ok(())
}

/// A change of the organization's branding; `None` keeps a field, `""` clears it.
#[derive(Debug, Clone, Default)]
pub struct BrandingChanges {
    /// Product name.
    pub product_name: Option<String>,
    /// Logo as a data URL.
    pub logo: Option<String>,
    /// Accent colour.
    pub accent_color: Option<String>,
    /// Landing path after sign-in.
    pub login_redirect_url: Option<String>,
}

impl BrandingChanges {
    fn is_empty(&self) -> bool {
        self.product_name.is_none()
            && self.logo.is_none()
            && self.accent_color.is_none()
            && self.login_redirect_url.is_none()
    }
}

fn check_own(actor: &Actor, org_id: i64) -> ApiResult<()> {
    if org_id == actor.org_id {
        Ok(())
    } else {
        Err(ApiError::not_found("organization"))
    }
}

/// The id of an organization, if it exists (instance administration).
pub async fn exists(db: &Db, org_id: i64) -> ApiResult<Option<i64>> {
    Ok(with_read!(db, conn, {
        sqlx::query_scalar("select id from organization where id = $1")
            .bind(org_id)
            .fetch_optional(conn)
            .await?
    }))
}

/// The caller's organization (other organizations are not found).
pub async fn get(db: &Db, actor: &Actor, org_id: i64) -> ApiResult<OrganizationView> {
    check_own(actor, org_id)?;
    actor.require(Permission::OrgView)?;
    let row: OrgRow = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ORG_COLUMNS} from organization o where o.id = $1"
        ))
        .bind(org_id)
        .fetch_one(conn)
        .await?
    });
    Ok(row.view())
}

/// The organizations the caller belongs to (and is active in).
pub async fn list_mine(db: &Db, actor: &Actor) -> ApiResult<Vec<OrganizationView>> {
    let rows: Vec<OrgRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {ORG_COLUMNS} from organization o \
             join org_member m on m.organization_id = o.id where m.user_id = $1 and m.deactivated_at is null order by o.id",
        ))
        .bind(actor.user_id)
        .fetch_all(conn)
        .await?
    });
    Ok(rows.into_iter().map(OrgRow::view).collect())
}

/// Changes the title and branding (`organization.manage`) or the audit retention
/// (`organization.billing`).
pub async fn update(
    db: &Db,
    actor: &Actor,
    org_id: i64,
    title: Option<String>,
    retention_days: Option<i64>,
    brand: &BrandingChanges,
) -> ApiResult<OrganizationView> {
    check_own(actor, org_id)?;
    actor.require(Permission::OrgManage)?;
    if retention_days.is_some() {
        actor.require(Permission::OrgBilling)?;
    }
    if let Some(t) = &title
        && (t.trim().is_empty() || t.chars().count() > 1000)
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "title",
            "must be 1 to 1000 characters",
        ));
    }
    if let Some(d) = retention_days
        && !(0..=36_500).contains(&d)
    {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "audit_retention_days",
            "must be between 0 (keep forever) and 36500",
        ));
    }
    validate_branding(brand)?;
    with_tx!(db, tx, {
        sqlx::query(
            "update organization set title = coalesce($1, title), audit_retention_days = coalesce($2, audit_retention_days), \
             updated_at = $3, brand_name = coalesce($5, brand_name), brand_logo = coalesce($6, brand_logo), \
             brand_color = coalesce($7, brand_color), login_redirect = coalesce($8, login_redirect) where id = $4",
        )
        .bind(&title)
        .bind(retention_days)
        .bind(now_micros())
        .bind(org_id)
        .bind(&brand.product_name)
        .bind(&brand.logo)
        .bind(&brand.accent_color)
        .bind(&brand.login_redirect_url)
        .execute(&mut *tx)
        .await?;
        // The logo itself is not copied into the log: its size is.
        let branding = (!brand.is_empty()).then(|| {
            json!({
                "product_name": brand.product_name,
                "logo_bytes": brand.logo.as_ref().map(String::len),
                "accent_color": brand.accent_color,
                "login_redirect_url": brand.login_redirect_url,
            })
        });
        audit!(
            tx,
            Prepared::new(
                actor,
                "organization.update",
                "organization",
                org_id,
                json!({"title": title, "audit_retention_days": retention_days, "branding": branding}),
            )
        );
        Ok::<_, ApiError>(())
    })?;
    get(db, actor, org_id).await
}

/// A member with their role and activity in the organization.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MembershipView {
    /// The member's user id.
    pub user_id: i64,
    /// The user.
    pub user: UserView,
    /// Organization role (`owner` … `annotator`).
    pub role: String,
    /// Whether the member may sign in to this organization.
    pub is_active: bool,
    /// ISO time of the last request.
    pub last_activity: String,
    /// Annotations the member authored in this organization (skips excluded).
    pub annotations_count: i64,
    /// Reviews the member made (reviews arrive with the review workflow; 0 until then).
    pub reviews_count: i64,
    /// Projects of this organization the member is a member of.
    pub projects_count: i64,
}

#[derive(sqlx::FromRow)]
struct MembershipRow {
    #[sqlx(flatten)]
    member: MemberRow,
    annotations_count: i64,
    projects_count: i64,
}

fn membership_view(row: MembershipRow) -> MembershipView {
    let (user, role) = row.member.split();
    let role_name = role.map_or("annotator", Role::as_str).to_string();
    let view = user.view(role);
    MembershipView {
        user_id: view.id,
        is_active: view.is_active,
        last_activity: view.last_activity.clone(),
        user: view,
        role: role_name,
        annotations_count: row.annotations_count,
        reviews_count: 0,
        projects_count: row.projects_count,
    }
}

fn membership_sql(condition: &str) -> String {
    format!(
        "select {MEMBER_COLUMNS}, \
         (select count(*) from annotation a join project p on p.id = a.project_id \
          where p.organization_id = m.organization_id and a.completed_by = u.id and not a.was_cancelled) as annotations_count, \
         (select count(*) from project_member pm join project p on p.id = pm.project_id \
          where p.organization_id = m.organization_id and pm.user_id = u.id) as projects_count \
         from org_member m join app_user u on u.id = m.user_id where m.organization_id = $1 and {condition}"
    )
}

/// Filters of the membership list.
#[derive(Debug, Default, Clone)]
pub struct MemberFilter {
    /// Only this role.
    pub role: Option<Role>,
    /// Email or name contains.
    pub search: Option<String>,
    /// Include deactivated members (default: yes, marked inactive).
    pub active: Option<bool>,
}

/// One page of the organization's members with their activity, and the total.
pub async fn list_memberships(
    db: &Db,
    actor: &Actor,
    org_id: i64,
    filter: &MemberFilter,
    offset: i64,
    limit: i64,
) -> ApiResult<(i64, Vec<MembershipView>)> {
    check_own(actor, org_id)?;
    actor.require(Permission::OrgView)?;
    let mut cond = String::from(
        "($2 = '' or m.role = $2) and ($3 = '' or lower(u.email) like $3 or lower(u.first_name || ' ' || u.last_name) like $3)",
    );
    match filter.active {
        Some(true) => cond.push_str(" and m.deactivated_at is null"),
        Some(false) => cond.push_str(" and m.deactivated_at is not null"),
        None => {}
    }
    let role = filter.role.map_or("", Role::as_str);
    let search = filter
        .search
        .as_ref()
        .map(|s| format!("%{}%", s.to_lowercase().replace(['%', '_'], "")))
        .unwrap_or_default();
    let (total, rows): (i64, Vec<MembershipRow>) = with_read!(db, conn, {
        let total: i64 = sqlx::query_scalar(&format!(
            "select count(*) from org_member m join app_user u on u.id = m.user_id where m.organization_id = $1 and {cond}"
        ))
        .bind(org_id)
        .bind(role)
        .bind(&search)
        .fetch_one(conn)
        .await?;
        let rows = sqlx::query_as(&format!(
            "{} order by u.id limit $4 offset $5",
            membership_sql(&cond)
        ))
        .bind(org_id)
        .bind(role)
        .bind(&search)
        .bind(limit)
        .bind(offset)
        .fetch_all(conn)
        .await?;
        (total, rows)
    });
    Ok((total, rows.into_iter().map(membership_view).collect()))
}

/// One member of the organization.
pub async fn get_membership(
    db: &Db,
    actor: &Actor,
    org_id: i64,
    user_id: i64,
) -> ApiResult<MembershipView> {
    check_own(actor, org_id)?;
    actor.require(Permission::OrgView)?;
    let row: Option<MembershipRow> = with_read!(db, conn, {
        sqlx::query_as(&membership_sql("m.user_id = $2 and $3 = ''"))
            .bind(org_id)
            .bind(user_id)
            .bind("")
            .fetch_optional(conn)
            .await?
    });
    row.map(membership_view)
        .ok_or_else(|| ApiError::not_found("member"))
}

/// Changes a member's role and/or active state in the actor's organization, refusing (and
/// auditing) escalations. `role: None` keeps the role; `active: None` keeps the state.
pub async fn set_member(
    db: &Db,
    actor: &Actor,
    user_id: i64,
    role: Option<Role>,
    active: Option<bool>,
) -> ApiResult<()> {
    set_roles_bulk(db, actor, &[user_id], role, active).await
}

/// [`set_member`] for many users in one transaction: all change or none does.
pub async fn set_roles_bulk(
    db: &Db,
    actor: &Actor,
    user_ids: &[i64],
    role: Option<Role>,
    active: Option<bool>,
) -> ApiResult<()> {
    actor.require(Permission::OrgManage)?;
    if role.is_some() && super::saml::roles_managed_by_idp(db, actor.org_id).await? {
        return Err(super::saml::managed_by_idp());
    }
    if user_ids.is_empty() {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "user_ids",
            "name at least one user",
        ));
    }
    if user_ids.len() > 1000 {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "user_ids",
            "at most 1000 users per request",
        ));
    }
    let action = match (role, active) {
        (_, Some(false)) => "member.deactivate",
        (_, Some(true)) => "member.reactivate",
        _ => "member.role",
    };
    let now = now_micros();
    let dialect = db.dialect();
    let outcome: Result<(), (i64, String)> = with_tx!(db, tx, {
        // Role changes of one organization are serialized (SQLite's single writer does that by
        // itself): two owners demoting each other at once cannot both see the other as the
        // remaining owner.
        if dialect == crate::storage::Dialect::Postgres {
            sqlx::query("select id from organization where id = $1 for update")
                .bind(actor.org_id)
                .execute(&mut *tx)
                .await?;
        }
        let members: Vec<(i64, String, Option<i64>)> = sqlx::query_as(&format!(
            "select user_id, role, deactivated_at from org_member where organization_id = $1 and user_id in ({})",
            user_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        ))
        .bind(actor.org_id)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(missing) = user_ids
            .iter()
            .find(|id| !members.iter().any(|m| m.0 == **id))
        {
            return Err(ApiError::field(
                ErrorCode::NotFound,
                "user_ids",
                format!("user {missing} is not a member of this organization"),
            ));
        }
        let mut owners: i64 = sqlx::query_scalar(
            "select count(*) from org_member where organization_id = $1 and role = 'owner' and deactivated_at is null",
        )
        .bind(actor.org_id)
        .fetch_one(&mut *tx)
        .await?;
        // Owners left after every change of the request.
        for (_, current, deactivated) in &members {
            let was_owner = current == "owner" && deactivated.is_none();
            let new_active = active.unwrap_or(deactivated.is_none());
            let is_owner = match role {
                Some(r) => r == Role::Owner,
                None => current == "owner",
            } && new_active;
            owners += i64::from(is_owner) - i64::from(was_owner);
        }
        for (user_id, current, _) in &members {
            let current = Role::parse(current);
            let new = if active == Some(false) {
                None
            } else {
                role.or(current)
            };
            if let Err(why) = authz::check_grant(actor.role, current, new, owners) {
                return Ok(Err((*user_id, why)));
            }
        }
        for (user_id, current, deactivated) in &members {
            if let Some(r) = role {
                sqlx::query(
                    "update org_member set role = $1 where organization_id = $2 and user_id = $3",
                )
                .bind(r.as_str())
                .bind(actor.org_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            }
            match active {
                Some(false) => {
                    sqlx::query("update org_member set deactivated_at = $1 where organization_id = $2 and user_id = $3 and deactivated_at is null")
                        .bind(now)
                        .bind(actor.org_id)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                Some(true) => {
                    sqlx::query("update org_member set deactivated_at = null where organization_id = $1 and user_id = $2")
                        .bind(actor.org_id)
                        .bind(user_id)
                        .execute(&mut *tx)
                        .await?;
                }
                None => {}
            }
            audit!(
                tx,
                Prepared::new(
                    actor,
                    action,
                    "user",
                    user_id,
                    json!({
                        "from_role": current,
                        "to_role": role.map(Role::as_str),
                        "was_active": deactivated.is_none(),
                        "active": active,
                    }),
                )
            );
        }
        Ok::<_, ApiError>(Ok(()))
    })?;
    match outcome {
        Ok(()) => Ok(()),
        Err((user_id, why)) => Err(users::refuse_escalation(
            db,
            actor,
            action,
            user_id,
            &why,
            json!({"to_role": role.map(Role::as_str), "active": active, "users": user_ids}),
        )
        .await),
    }
}

// ---------------------------------------------------------------------------------------------
// Invitations

/// An invitation as listed (the token is shown once, at creation).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationView {
    /// Id.
    pub id: i64,
    /// First characters of the token.
    pub preview: String,
    /// Role the invitee gets.
    pub role: String,
    /// Workspace the invitee joins, if any.
    pub workspace: Option<i64>,
    /// `pending`, `used`, `expired` or `revoked`.
    pub status: String,
    /// ISO creation time.
    pub created_at: String,
    /// ISO expiry time.
    pub expires_at: String,
    /// Who used it.
    pub used_by: Option<i64>,
    /// The token (only in the creation response).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Relative link to sign up with (only in the creation response).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invite_url: Option<String>,
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: i64,
    organization_id: i64,
    preview: String,
    role: String,
    workspace_id: Option<i64>,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    used_by: Option<i64>,
    revoked_at: Option<i64>,
}

impl InvitationRow {
    fn status(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.used_at.is_some() {
            "used"
        } else if self.expires_at <= now {
            "expired"
        } else {
            "pending"
        }
    }

    fn view(&self, now: i64) -> InvitationView {
        InvitationView {
            id: self.id,
            preview: self.preview.clone(),
            role: self.role.clone(),
            workspace: self.workspace_id,
            status: self.status(now).into(),
            created_at: format_micros(self.created_at),
            expires_at: format_micros(self.expires_at),
            used_by: self.used_by,
            token: None,
            invite_url: None,
        }
    }
}

const INVITATION_COLUMNS: &str = "id, organization_id, preview, role, workspace_id, created_at, expires_at, used_at, used_by, revoked_at";

/// Creates a single-use invitation link for `role` (never above the creator's own role, Owner
/// only from owners), optionally into a workspace, valid for `hours`.
pub async fn create_invitation(
    db: &Db,
    actor: &Actor,
    role: Role,
    workspace: Option<i64>,
    hours: i64,
) -> ApiResult<InvitationView> {
    actor.require(Permission::InviteManage)?;
    if !(1..=24 * 30).contains(&hours) {
        return Err(ApiError::field(
            ErrorCode::ValidationError,
            "expires_in_hours",
            "must be between 1 and 720 (30 days)",
        ));
    }
    if let Err(why) = authz::check_grant(actor.role, None, Some(role), 1) {
        return Err(users::refuse_escalation(
            db,
            actor,
            "invitation.create",
            0,
            &why,
            json!({"role": role.as_str()}),
        )
        .await);
    }
    if let Some(ws) = workspace {
        super::access::workspace(db, actor, ws, Permission::WorkspaceManage).await?;
    }
    let token = format!("inv_{}", auth::random_secret(40));
    let now = now_micros();
    let expires = now + hours * 3_600_000_000;
    let id: i64 = with_tx!(db, tx, {
        let id: i64 = sqlx::query_scalar(
            "insert into invitation (organization_id, token_hash, preview, role, workspace_id, created_by, created_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6, $7, $8) returning id",
        )
        .bind(actor.org_id)
        .bind(auth::hash_token(&token))
        .bind(auth::preview(&token))
        .bind(role.as_str())
        .bind(workspace)
        .bind(actor.user_id)
        .bind(now)
        .bind(expires)
        .fetch_one(&mut *tx)
        .await?;
        audit!(
            tx,
            Prepared::new(
                actor,
                "invitation.create",
                "invitation",
                id,
                json!({"role": role.as_str(), "workspace": workspace, "expires_at": format_micros(expires)}),
            )
        );
        Ok::<_, ApiError>(id)
    })?;
    let mut view = invitation(db, actor, id).await?;
    view.invite_url = Some(format!("/user/signup?token={token}"));
    view.token = Some(token);
    Ok(view)
}

async fn invitation(db: &Db, actor: &Actor, id: i64) -> ApiResult<InvitationView> {
    let row: Option<InvitationRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {INVITATION_COLUMNS} from invitation where id = $1 and organization_id = $2"
        ))
        .bind(id)
        .bind(actor.org_id)
        .fetch_optional(conn)
        .await?
    });
    Ok(row
        .ok_or_else(|| ApiError::not_found("invitation"))?
        .view(now_micros()))
}

/// The organization's invitations, newest first.
pub async fn list_invitations(db: &Db, actor: &Actor) -> ApiResult<Vec<InvitationView>> {
    actor.require(Permission::InviteManage)?;
    let rows: Vec<InvitationRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {INVITATION_COLUMNS} from invitation where organization_id = $1 order by id desc limit 1000"
        ))
        .bind(actor.org_id)
        .fetch_all(conn)
        .await?
    });
    let now = now_micros();
    Ok(rows.iter().map(|r| r.view(now)).collect())
}

/// Revokes a pending invitation.
pub async fn revoke_invitation(db: &Db, actor: &Actor, id: i64) -> ApiResult<()> {
    // Another organization's invitation is not found, whatever the caller's role.
    let current = invitation(db, actor, id).await?;
    actor.require(Permission::InviteManage)?;
    if current.status != "pending" {
        return Err(ApiError::new(
            ErrorCode::InvalidInvitation,
            format!("this invitation is already {}", current.status),
        ));
    }
    with_tx!(db, tx, {
        sqlx::query("update invitation set revoked_at = $1 where id = $2 and organization_id = $3")
            .bind(now_micros())
            .bind(id)
            .bind(actor.org_id)
            .execute(&mut *tx)
            .await?;
        audit!(
            tx,
            Prepared::new(actor, "invitation.revoke", "invitation", id, json!({}))
        );
        Ok::<_, ApiError>(())
    })
}

/// Who signs up through an invitation.
#[derive(Debug, Clone)]
pub struct Signup {
    /// Email.
    pub email: String,
    /// Password (at least 8 characters).
    pub password: Option<String>,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
}

/// Signs up through an invitation link: the new user joins the inviting organization with the
/// invitation's role (and workspace), and the link is used up in the same transaction. Returns
/// the user and their API token.
pub async fn accept_invitation(
    db: &Db,
    meta: &crate::authz::RequestMeta,
    token: &str,
    signup: &Signup,
) -> ApiResult<(i64, String)> {
    let row: Option<InvitationRow> = with_read!(db, conn, {
        sqlx::query_as(&format!(
            "select {INVITATION_COLUMNS} from invitation where token_hash = $1"
        ))
        .bind(auth::hash_token(token))
        .fetch_optional(conn)
        .await?
    });
    let Some(row) = row else {
        return Err(ApiError::new(
            ErrorCode::InvalidInvitation,
            "this invitation link is not valid; ask for a new one",
        ));
    };
    let status = row.status(now_micros());
    if status != "pending" {
        let why = match status {
            "used" => {
                "this invitation link was already used; each link works once — ask for a new one"
            }
            "expired" => "this invitation link has expired; ask for a new one",
            _ => "this invitation link was revoked; ask for a new one",
        };
        return Err(ApiError::new(ErrorCode::InvalidInvitation, why));
    }
    let role = Role::parse(&row.role).unwrap_or(Role::Annotator);
    let mut inviter = Actor::instance(row.organization_id, meta.clone());
    inviter.email = signup.email.clone();
    // One transaction: the user, the claimed link, the workspace membership and the audit
    // entries all happen, or none does.
    let (user, api_token) = users::create_user_with(
        db,
        &inviter,
        row.organization_id,
        &NewUser {
            email: signup.email.clone(),
            password: signup.password.clone(),
            role,
            token: None,
            first_name: signup.first_name.clone(),
            last_name: signup.last_name.clone(),
            username: None,
        },
        Some(users::InvitationClaim {
            id: row.id,
            workspace_id: row.workspace_id,
            meta: meta.clone(),
        }),
    )
    .await?;
    Ok((user.id, api_token))
}
