"""The HTTP toolkit every component declares its routes with: ``Op``, problems, bodies, paging.

A component imports only this package's names (``from hub.api import Op, respond``).
"""

from .bodies import CHUNK, body, enum_query, listed, multipart_reader, path_id, request_key, respond, row_id
from .listing import ListError, PageQuery, etags, page
from .models import Items, Listing, Problem, RowId, change_of, dump
from .problems import PROBLEM_TYPE, ApiProblem, HttpError, problem, problems
from .routes import Handler, Op, RouteTable

__all__ = [
    "CHUNK", "PROBLEM_TYPE", "ApiProblem", "Handler", "HttpError", "Items", "ListError", "Listing", "Op", "PageQuery", "Problem",
    "RouteTable", "RowId", "body", "change_of", "dump", "enum_query", "etags", "listed", "multipart_reader", "page",
    "path_id", "problem", "problems", "request_key", "respond", "row_id",
]
