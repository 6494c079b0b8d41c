"""BOINC's data and formats: database layer, config.xml, states, schema, hierarchy, templates, work creation, XML, crypto."""
