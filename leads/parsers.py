"""Request parsers for the leads API."""

from django.http import QueryDict
from rest_framework.exceptions import ParseError
from rest_framework.parsers import FormParser, JSONParser, get_encoding


class SafeJSONParser(JSONParser):
    """JSONParser that returns 400, not 500, for JSON nested too deeply to parse.

    Python's json module raises RecursionError on input such as 100,000 nested arrays,
    which DRF's parser does not catch.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise ParseError("JSON parse error - the JSON is nested too deeply.") from error


class StrictFormParser(FormParser):
    """FormParser that returns 400 for a body that is not valid text in its charset.

    Django's QueryDict decodes such a body as Latin-1 instead, which would store the
    junk bytes as letters. Percent-encoded junk ("%FF") is decoded to U+FFFD, which the
    lead serializer rejects by field.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = get_encoding(parser_context or {})
        body = stream.read()
        try:
            body.decode(encoding)
        except UnicodeDecodeError as error:
            raise ParseError(
                f"Form parse error - the body is not valid {encoding} at byte {error.start}."
            ) from error
        return QueryDict(body, encoding=encoding)
