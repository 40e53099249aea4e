using System.Text;
using System.Text.Unicode;

namespace HarnessServer.Tools;

/// <summary>
/// Bytes a tool returned (a command's stdout, a file, a response body) as a result stores them without loss: the
/// text itself when the bytes are UTF-8 with no NUL (a jsonb column cannot hold <c>\u0000</c>), otherwise their base64
/// with <see cref="Base64"/> set, so that the stored result is exactly what the tool produced whatever its bytes.
/// </summary>
internal readonly record struct OutputText(string Value, bool Base64)
{
    /// <summary>The value of a result's <c>encoding</c> field when the bytes are given as base64.</summary>
    public const string Base64Encoding = "base64";

    /// <param name="bytes">What was kept.</param>
    /// <param name="truncatedMarker">When the bytes were cut at a limit, the marker appended to the text form (never to base64).</param>
    public static OutputText Of(ReadOnlySpan<byte> bytes, string? truncatedMarker = null)
    {
        if (truncatedMarker is not null)
        {
            // A cut can split the last character; the kept prefix ends before it (at most 3 bytes shorter).
            bytes = bytes[..CompletePrefix(bytes)];
        }

        return Utf8.IsValid(bytes) && !bytes.Contains((byte)0)
            ? new OutputText(Encoding.UTF8.GetString(bytes) + truncatedMarker, false)
            : new OutputText(Convert.ToBase64String(bytes), true);
    }

    // The length of the longest prefix that does not end inside a UTF-8 sequence.
    private static int CompletePrefix(ReadOnlySpan<byte> bytes)
    {
        for (var back = 1; back <= Math.Min(3, bytes.Length); back++)
        {
            var b = bytes[^back];
            if ((b & 0xC0) != 0x80)
            {
                var length = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
                return length > back ? bytes.Length - back : bytes.Length;
            }
        }

        return bytes.Length;
    }
}
