"""Request parsers for the leads API."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


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
