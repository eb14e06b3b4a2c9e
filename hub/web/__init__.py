"""What people and scripts reach over HTTP: the application serving every component's operations,
its OpenAPI document and the operator panel."""

from .component import Web

__all__ = ["Web"]
