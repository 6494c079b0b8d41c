"""Project administration: creating a project (new or --existing), project.xml, app versions, our ext_ tables."""
