"""The district console: server-rendered pages under /console for district admins and support."""
