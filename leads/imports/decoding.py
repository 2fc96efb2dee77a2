"""Turning an uploaded file's bytes into text.

Exports come as UTF-8 (with or without a byte order mark), as UTF-16 with a byte order
mark (Outlook and Excel's "Unicode text"), or as Windows-1252 from older Windows tools.
"""

import codecs

from .base import MAX_FILE_SIZE, MAX_FILE_SIZE_TEXT, ImportFileError

FALLBACK_ENCODING = "cp1252"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def check_size(size: int) -> None:
    """Raise ImportFileError for an empty file or one above MAX_FILE_SIZE bytes."""
    if size == 0:
        raise ImportFileError("The file is empty.")
    if size > MAX_FILE_SIZE:
        raise ImportFileError(
            f"The file is {size / 1_000_000:.1f} MB, larger than the {MAX_FILE_SIZE_TEXT} "
            f"limit for imports. Split it into smaller files."
        )


def has_utf16_bom(content: bytes) -> bool:
    return content.startswith(_UTF16_BOMS)


def decode_text(content: bytes) -> str:
    """Decode a whole file: UTF-16 by its byte order mark, else UTF-8, else Windows-1252.

    Raises ImportFileError for bytes that none of these decode, and for text with NUL
    characters, which a text export never contains but binary files do.
    """
    if has_utf16_bom(content):
        text = _decode(content, "utf-16")
    else:
        # Checked on the bytes first, so that binary files get this message and not
        # the encoding error below.
        if b"\x00" in content:
            reject_binary("\x00")
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = _decode(content, FALLBACK_ENCODING)
    reject_binary(text)
    return text


def decode_line(line: bytes, charset: str | None = None) -> str:
    """Decode one line in `charset` if given and known, else UTF-8, else Windows-1252.

    Raises UnicodeDecodeError when no encoding fits.
    """
    if charset:
        try:
            return line.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode(FALLBACK_ENCODING)


def reject_binary(text: str) -> None:
    if "\x00" in text:
        raise ImportFileError(
            "The file contains binary data, not text. Upload a vCard (.vcf) or CSV file."
        )


def _decode(content: bytes, encoding: str) -> str:
    try:
        return content.decode(encoding)
    except UnicodeDecodeError as error:
        raise ImportFileError(
            f"The file is not UTF-8, UTF-16 or Windows-1252 text (byte "
            f"0x{content[error.start]:02X} at offset {error.start} cannot be decoded). "
            f"Export it again as UTF-8."
        ) from error
