"""Path patterns the URL maps share; the OpenAPI schema documents exactly these (drf-spectacular reads them)."""

# A stream's slug, as Django's ``slug`` converter and DRF's SlugField accept it.
SLUG = r"[-a-zA-Z0-9_]+"
# A comment's or a saga's id: a UUID in its canonical, hyphenated form (any letter case).
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
