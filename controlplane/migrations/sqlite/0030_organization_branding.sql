-- Branding of an organization (ADR 0045): the product name and logo shown in the UI's header
-- and on its sign-in page, the accent colour of its pages, and where a sign-in lands instead of
-- /projects. Empty text means "not set" (Verity's own name, no logo, the default colour).
alter table organization add column brand_name text not null default '';
alter table organization add column brand_logo text not null default '';
alter table organization add column brand_color text not null default '';
alter table organization add column login_redirect text not null default '';
