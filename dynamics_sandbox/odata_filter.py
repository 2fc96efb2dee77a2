"""OData `$filter` parser: a tokenizer and a recursive-descent parser that build a predicate.

Grammar (the subset that Dataverse accepts for the tables the sandbox serves):

    expression := and_expr ("or" and_expr)*
    and_expr   := unary ("and" unary)*
    unary      := "not" unary | primary
    primary    := "(" expression ")" | function | operand [comparison operand]
    function   := ("contains" | "startswith" | "endswith") "(" property "," string ")"
    operand    := property | string | number | guid | datetime | true | false | null

Parentheses and `not` may nest at most MAX_NESTING_DEPTH levels deep, so that crafted
input cannot exhaust Python's recursion limit. String comparisons ignore case, as in
Dataverse. Inside `contains`, `startswith` and
`endswith`, `%` and `_` are SQL LIKE wildcards, again as in Dataverse. Text is never
evaluated as code.
"""

import re
from datetime import datetime

from . import schema


class FilterError(ValueError):
    """Invalid $filter text. The message is the one Dataverse returns."""


COMPARISON_OPERATORS = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
STRING_FUNCTIONS = ("contains", "startswith", "endswith")
# Maximum nesting of parentheses and `not` in one $filter. Microsoft.OData's URI parser
# rejects deeper expressions through its FilterLimit setting.
# NOTE: Dataverse's value of that limit and its error code are unconfirmed, so 100 and
# code 0x0 are the sandbox's choice.
MAX_NESTING_DEPTH = 100
# Maximum digits in a number literal. Int32 and Int64 values need at most 19 digits.
MAX_NUMBER_DIGITS = 30

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# ASCII digits only, because `\d` also matches digits of other scripts.
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,7})?)?(Z|[+-][0-9]{2}:[0-9]{2}))?"
)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Token:
    def __init__(self, kind, value, position):
        self.kind = kind  # string, number, guid, datetime, name, symbol, end
        self.value = value
        self.position = position

    def __repr__(self):
        return f"Token({self.kind}, {self.value!r}, {self.position})"


def tokenize(text):
    """Split $filter text into tokens. Raise FilterError on an unterminated literal."""
    tokens = []
    position = 0
    length = len(text)
    while position < length:
        character = text[position]
        if character.isspace():
            position += 1
            continue
        if character == "'":
            start = position
            position += 1
            value = []
            while True:
                if position >= length:
                    # OData reports the position where the lexer stopped: the text end.
                    raise FilterError(
                        f"There is an unterminated literal at position {length} in '{text}'."
                    )
                if text[position] == "'":
                    if position + 1 < length and text[position + 1] == "'":
                        value.append("'")
                        position += 2
                        continue
                    position += 1
                    break
                value.append(text[position])
                position += 1
            tokens.append(Token("string", "".join(value), start))
            continue
        if character in "(),":
            tokens.append(Token("symbol", character, position))
            position += 1
            continue
        match = _GUID.match(text, position)
        if match and not _is_identifier_char(text, match.end()):
            tokens.append(Token("guid", match.group().lower(), position))
            position = match.end()
            continue
        match = _DATETIME.match(text, position)
        if match and match.group(1) and not _is_identifier_char(text, match.end()):
            tokens.append(Token("datetime", _parse_datetime(match.group(), position, text), position))
            position = match.end()
            continue
        match = _NUMBER.match(text, position)
        if match and not _is_identifier_char(text, match.end()):
            number = match.group()
            if len(number) > MAX_NUMBER_DIGITS:
                raise FilterError(
                    f"The number literal at position {position} in '{text}' has more than "
                    f"{MAX_NUMBER_DIGITS} digits."
                )
            tokens.append(Token("number", float(number) if "." in number else int(number), position))
            position = match.end()
            continue
        match = _IDENTIFIER.match(text, position)
        if match:
            tokens.append(Token("name", match.group(), position))
            position = match.end()
            continue
        raise FilterError(f"Syntax error at position {position} in '{text}'.")
    tokens.append(Token("end", None, length))
    return tokens


def _parse_datetime(literal, position, text):
    """Return `literal` unchanged if it is a real date and time, else raise FilterError."""
    try:
        _normalize(literal, "Edm.DateTimeOffset")
    except ValueError:
        raise FilterError(
            f"The DateTimeOffset literal '{literal}' at position {position} in '{text}' is "
            "not a valid date and time."
        ) from None
    return literal


def _is_identifier_char(text, position):
    return position < len(text) and (text[position].isalnum() or text[position] == "_")


def like_pattern(value, mode):
    """Return a regex for a LIKE match where `%` and `_` in `value` are wildcards."""
    parts = []
    for character in value:
        if character == "%":
            parts.append(".*")
        elif character == "_":
            parts.append(".")
        else:
            parts.append(re.escape(character))
    body = "".join(parts)
    if mode in ("contains", "endswith"):
        body = ".*" + body
    if mode in ("contains", "startswith"):
        body = body + ".*"
    return re.compile(body, re.IGNORECASE | re.DOTALL)


class _Literal:
    def __init__(self, edm_type, value):
        self.edm_type = edm_type
        self.value = value


class _Property:
    def __init__(self, column):
        self.column = column
        self.edm_type = column.edm_type


_LITERAL_TYPES = {
    "string": "Edm.String",
    "guid": "Edm.Guid",
    "datetime": "Edm.DateTimeOffset",
}

# Edm types that may be compared with each other.
_NUMERIC = {"Edm.Int32", "Edm.Int64", "Edm.Double", "Edm.Decimal"}


class _Parser:
    def __init__(self, text, table):
        self.text = text
        self.table = table
        self.tokens = tokenize(text)
        self.index = 0
        # Current nesting of parentheses and `not`, checked against MAX_NESTING_DEPTH.
        self.depth = 0

    @property
    def current(self):
        return self.tokens[self.index]

    def advance(self):
        token = self.tokens[self.index]
        self.index += 1
        return token

    def is_name(self, value):
        return self.current.kind == "name" and self.current.value == value

    def expect_symbol(self, symbol):
        token = self.advance()
        if token.kind != "symbol" or token.value != symbol:
            raise FilterError(
                f"Syntax error: character '{symbol}' is expected at position "
                f"{token.position} in '{self.text}'."
            )

    def parse(self):
        predicate = self.parse_or()
        if self.current.kind != "end":
            raise FilterError(
                f"Syntax error at position {self.current.position} in '{self.text}'."
            )
        return predicate

    def enter_nesting(self, token):
        """Count one more level of nesting at `token`, or raise FilterError over the limit."""
        self.depth += 1
        if self.depth > MAX_NESTING_DEPTH:
            raise FilterError(
                f"The $filter expression is nested more than {MAX_NESTING_DEPTH} levels deep "
                f"(parentheses and 'not') at position {token.position}. Simplify the "
                "expression."
            )

    def parse_or(self):
        # A chain of `or` becomes one flat predicate, so evaluating a long chain does
        # not recurse once per operand.
        operands = [self.parse_and()]
        while self.is_name("or"):
            self.advance()
            operands.append(self.parse_and())
        if len(operands) == 1:
            return operands[0]
        return lambda record: any(operand(record) for operand in operands)

    def parse_and(self):
        operands = [self.parse_unary()]
        while self.is_name("and"):
            self.advance()
            operands.append(self.parse_unary())
        if len(operands) == 1:
            return operands[0]
        return lambda record: all(operand(record) for operand in operands)

    def parse_unary(self):
        if self.is_name("not"):
            self.enter_nesting(self.advance())
            inner = self.parse_unary()
            self.depth -= 1
            return lambda record: not inner(record)
        return self.parse_primary()

    def parse_primary(self):
        token = self.current
        if token.kind == "symbol" and token.value == "(":
            self.enter_nesting(self.advance())
            inner = self.parse_or()
            self.expect_symbol(")")
            self.depth -= 1
            return inner
        if token.kind == "name" and token.value in STRING_FUNCTIONS:
            following = self.tokens[self.index + 1]
            if following.kind == "symbol" and following.value == "(":
                return self.parse_function()
        left = self.parse_operand()
        if self.current.kind == "name" and self.current.value in COMPARISON_OPERATORS:
            operator = self.advance().value
            right = self.parse_operand()
            return self.comparison(left, operator, right)
        if isinstance(left, _Property) and left.edm_type == "Edm.Boolean":
            return lambda record: record.get(left.column.value_name) is True
        raise FilterError(
            f"Syntax error at position {self.current.position} in '{self.text}'."
        )

    def parse_function(self):
        name = self.advance().value
        self.expect_symbol("(")
        target = self.parse_operand()
        self.expect_symbol(",")
        argument = self.parse_operand()
        self.expect_symbol(")")
        if not isinstance(target, _Property) or target.edm_type != "Edm.String":
            raise FilterError(
                f"No function signature for the function with name '{name}' matches the "
                f"specified arguments. The function signatures considered are: "
                f"{name}(Edm.String Nullable=true, Edm.String Nullable=true)."
            )
        if not isinstance(argument, _Literal) or argument.edm_type != "Edm.String":
            raise FilterError(
                f"No function signature for the function with name '{name}' matches the "
                f"specified arguments. The function signatures considered are: "
                f"{name}(Edm.String Nullable=true, Edm.String Nullable=true)."
            )
        pattern = like_pattern(argument.value, name)
        property_name = target.column.value_name

        def matches(record):
            value = record.get(property_name)
            return value is not None and pattern.fullmatch(value) is not None

        return matches

    def parse_operand(self):
        token = self.advance()
        if token.kind in _LITERAL_TYPES:
            return _Literal(_LITERAL_TYPES[token.kind], token.value)
        if token.kind == "number":
            edm_type = "Edm.Double" if isinstance(token.value, float) else "Edm.Int32"
            return _Literal(edm_type, token.value)
        if token.kind == "name":
            if token.value == "null":
                return _Literal(None, None)
            if token.value in ("true", "false"):
                return _Literal("Edm.Boolean", token.value == "true")
            column = self.table.column_by_value_name(token.value)
            if column is None:
                raise FilterError(
                    f"Could not find a property named '{token.value}' on type "
                    f"'{self.table.type_name}'."
                )
            return _Property(column)
        raise FilterError(f"Syntax error at position {token.position} in '{self.text}'.")

    def comparison(self, left, operator, right):
        kind = COMPARISON_OPERATORS[operator]
        left_type, right_type = left.edm_type, right.edm_type
        compatible = (
            left_type is None
            or right_type is None
            or left_type == right_type
            or (left_type in _NUMERIC and right_type in _NUMERIC)
        )
        if not compatible:
            raise FilterError(
                "A binary operator with incompatible types was detected. Found operand "
                f"types '{left_type}' and '{right_type}' for operator kind '{kind}'."
            )
        edm_type = left_type or right_type
        get_left = _value_getter(left, edm_type)
        get_right = _value_getter(right, edm_type)

        def compare(record):
            a, b = get_left(record), get_right(record)
            if operator == "eq":
                return a == b
            if operator == "ne":
                return a != b
            if a is None or b is None:
                return False
            if operator == "gt":
                return a > b
            if operator == "ge":
                return a >= b
            if operator == "lt":
                return a < b
            return a <= b

        return compare


def _normalize(value, edm_type):
    """Convert a stored or literal value to a comparable one."""
    if value is None:
        return None
    if edm_type == "Edm.String":
        return value.casefold()
    if edm_type == "Edm.Guid":
        return value.lower()
    if edm_type == "Edm.DateTimeOffset":
        text = value.replace("Z", "+00:00")
        if "T" not in text:
            text += "T00:00:00+00:00"
        return datetime.fromisoformat(text)
    return value


def _value_getter(operand, edm_type):
    if isinstance(operand, _Literal):
        value = _normalize(operand.value, edm_type)
        return lambda record: value
    name = operand.column.value_name
    return lambda record: _normalize(record.get(name), edm_type)


def parse_filter(text, table: schema.Table):
    """Return a predicate record -> bool for a $filter expression on `table`."""
    return _Parser(text, table).parse()
