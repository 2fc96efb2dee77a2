"""Building OData query strings that Dataverse reads exactly as meant."""

from urllib.parse import quote


def literal(value):
    """Return `value` as an OData string literal, with single quotes doubled.

    A value such as "o'neil@example.com" becomes 'o''neil@example.com', so no input can
    close the literal early and add conditions to the filter.
    """
    return "'" + str(value).replace("'", "''") + "'"


def any_equal(column_values):
    """Return a filter that matches when any (column, value) pair is equal.

    Pairs with an empty value are left out; returns "" when none remain.
    """
    terms = [f"{column} eq {literal(value)}" for column, value in column_values if value]
    return " or ".join(terms)


def query_string(options):
    """Encode query options, percent-encoding every reserved character in the values.

    Dataverse reads `+` in a URL as a space, so a value like dana+expo@example.com must
    travel as %2B; `&`, `#` and non-ASCII text are encoded for the same reason.
    """
    pairs = []
    for name, value in options.items():
        if value is None or value == "":
            continue
        pairs.append(f"{name}={quote(str(value), safe='')}")
    return "&".join(pairs)
