"""Who may do what: accounts, API tokens, sessions and the role policy."""

from .accounts import Accounts, Principal, Role
from .component import Access
from .policy import PRINCIPAL, required_roles

__all__ = ["PRINCIPAL", "Access", "Accounts", "Principal", "Role", "required_roles"]
