"""What people see: the HTTP application, its OpenAPI document, the live feed and the panel."""
