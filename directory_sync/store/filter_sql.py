"""SQL conditions and sort keys on directory records for SCIM filters and ``sortBy``.

``scim.filters`` decides what a filter means (which attribute, which comparison, what is
refused); this module writes it as SQL on the record's columns and its stored document, with
PostgreSQL's jsonb operators and SQLite's JSON1 functions side by side. Every condition is
never NULL: an absent attribute compares false, so ``not (title eq "x")`` matches users
without a title. A condition is a ``(sql, params)`` pair until ``condition_q`` or
``exists_q`` makes it a ``Q`` on ``DirectoryRecord``.
"""

from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL

from ..models import DirectoryRecord

# The alias of one element of a multi-valued attribute inside ``exists_q``.
_ELEMENT = "scim_element"
_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class FilterSql:
    """The dialect of the current database; one per translated filter."""

    def __init__(self):
        self.postgres = connection.vendor == "postgresql"
        self.doc = self.column("document")

    @staticmethod
    def column(name: str) -> str:
        """A ``DirectoryRecord`` column, qualified by its table."""
        quote = connection.ops.quote_name
        return f"{quote(DirectoryRecord._meta.db_table)}.{quote(name)}"

    # --- reading the document ---

    def text(self, path: tuple, source: str | None = None) -> tuple[str, list]:
        """The text at ``path`` (keys, or array positions as ints) of the document."""
        source = source or self.doc
        if self.postgres:
            return f"({source} #>> %s::text[])", [[str(key) for key in path]]
        return f"json_extract({source}, %s)", [self._json_path(path)]

    def _elements(self, path: tuple[str, ...]) -> tuple[str, list]:
        if self.postgres:
            return (
                f"jsonb_array_elements(CASE WHEN jsonb_typeof({self.doc} #> %s::text[]) = "
                f"'array' THEN {self.doc} #> %s::text[] ELSE '[]'::jsonb END) AS {_ELEMENT}",
                [list(path), list(path)],
            )
        return f"json_each({self.doc}, %s) AS {_ELEMENT}", [self._json_path(path)]

    def element_text(self, sub: str | None) -> tuple[str, list]:
        """The text of one element inside ``exists_q`` (``sub``: its sub-attribute's)."""
        if sub is None:
            if self.postgres:
                return f"({_ELEMENT}.value #>> '{{}}')", []
            return f"{_ELEMENT}.value", []
        return self.text((sub,), f"{_ELEMENT}.value")

    @staticmethod
    def _json_path(path: tuple) -> str:
        return "$" + "".join(
            f"[{key}]" if isinstance(key, int) else '."' + key.replace('"', '""') + '"'
            for key in path
        )

    # --- comparisons: (sql, params) never NULL ---

    @staticmethod
    def null_compare(expr: str, params: list, *, absent: bool) -> tuple[str, list]:
        """``expr`` is absent (``eq null``) or present (``ne null``)."""
        present = f"({expr} IS NOT NULL)"
        return (f"NOT {present}" if absent else present), params

    def boolean_compare(
        self, expr: str, params: list, value: bool, *, negate: bool
    ) -> tuple[str, list]:
        condition = f"COALESCE({expr} = %s, FALSE)"
        literal = ("true" if value else "false") if self.postgres else int(value)
        return (f"NOT {condition}" if negate else condition), [*params, literal]

    def string_compare(
        self, expr: str, params: list, operator: str, value: str, *, case_exact: bool
    ) -> tuple[str, list]:
        """``expr <operator> value`` for a SCIM operator (eq, ne, co, sw, ew, gt, ge, lt,
        le); case-folded on both sides unless ``case_exact``."""
        if not case_exact:
            expr, value = f"lower({expr})", value.lower()
        if operator in ("eq", "ne"):
            condition, extra = f"{expr} = %s", [value]
        elif operator == "co":
            condition = f"strpos({expr}, %s) > 0" if self.postgres else f"instr({expr}, %s) > 0"
            extra = [value]
        elif operator == "sw":
            condition, extra = f"substr({expr}, 1, length(%s)) = %s", [value, value]
        elif operator == "ew":
            # ``expr`` twice: its parameters twice.
            condition = f"substr({expr}, length({expr}) - length(%s) + 1) = %s"
            params, extra = [*params, *params], [value, value]
        else:
            condition, extra = f"{expr} {_SYMBOLS[operator]} %s", [value]
        condition = f"COALESCE({condition}, FALSE)"
        params = [*params, *extra]
        return (f"NOT {condition}" if operator == "ne" else condition), params

    @staticmethod
    def present(expr: str, params: list, *, string: bool) -> tuple[str, list]:
        """A value is there (a string: and not empty)."""
        if string:
            return f"COALESCE({expr} <> '', FALSE)", params
        return f"({expr} IS NOT NULL)", params

    @staticmethod
    def combine(op: str, parts: list[tuple[str, list]]) -> tuple[str, list]:
        """``parts`` joined by ``op`` ("and" or "or")."""
        joiner = f" {op.upper()} "
        return "(" + joiner.join(p[0] for p in parts) + ")", [x for p in parts for x in p[1]]

    @staticmethod
    def negate(part: tuple[str, list]) -> tuple[str, list]:
        return f"NOT {part[0]}", part[1]

    # --- as ORM expressions ---

    @staticmethod
    def condition_q(condition: str, params: list) -> Q:
        return Q(RawSQL(condition, params, output_field=BooleanField()))

    def exists_q(self, path: tuple[str, ...], condition: str, params: list) -> Q:
        """Some element of the array at ``path`` meets ``condition`` (on ``element_text``)."""
        source, source_params = self._elements(path)
        return Q(
            RawSQL(
                f"EXISTS (SELECT 1 FROM {source} WHERE {condition})",
                [*source_params, *params],
                output_field=BooleanField(),
            )
        )

    def sort_key(self, path: tuple, *, fold: bool) -> RawSQL:
        """The text at ``path`` as an ``ORDER BY`` expression (``fold``: lower-cased)."""
        text, params = self.text(path)
        return RawSQL(f"lower({text})" if fold else text, params)
