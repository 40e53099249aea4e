namespace HarnessServer.Http;

/// <summary>
/// What a PostgreSQL <c>text</c> column cannot hold: a NUL character (the server refuses the UTF-8 byte 0x00) and
/// an unpaired UTF-16 surrogate (it has no UTF-8 form; Npgsql refuses to encode it). Values are checked where they
/// enter (request bodies, token claims) so that they are refused with a precise answer instead of failing a write.
/// </summary>
internal static class StorableText
{
    /// <summary>Why <paramref name="value"/> cannot be stored as text, or null when it can.</summary>
    public static string? Problem(string? value)
    {
        if (value is null)
        {
            return null;
        }

        var span = value.AsSpan();
        for (var i = 0; i < span.Length; i++)
        {
            var c = span[i];
            if (c == '\0')
            {
                return $"it contains a NUL character at index {i}";
            }

            if (char.IsHighSurrogate(c) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                return $"it contains an unpaired surrogate (U+{(int)c:X4}) at index {i}";
            }
        }

        return null;
    }
}
