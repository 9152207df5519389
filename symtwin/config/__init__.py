"""Site config: schema, loading with file/line errors, SI conversion."""

from symtwin.config.site import EXIT_CONFIG_ERROR, ConfigError, Issue, LoadedSite, TagSpec, load_site

__all__ = ["EXIT_CONFIG_ERROR", "ConfigError", "Issue", "LoadedSite", "TagSpec", "load_site"]
