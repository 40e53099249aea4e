using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace HarnessServer.Audit;

/// <summary>
/// RFC 8785 (JCS) canonical JSON: object members sorted by the UTF-16 code units of their names, no whitespace,
/// strings escaped as ECMAScript's JSON.stringify does, numbers in ECMAScript's shortest form. Output is UTF-8.
/// </summary>
internal static class CanonicalJson
{
    private static readonly byte[] Null = "null"u8.ToArray();

    // Every character JSON.stringify escapes, plus surrogates (escaped only when lone): strings without any take the fast path.
    private static readonly SearchValues<char> Escaped = SearchValues.Create(
        string.Concat(Enumerable.Range(0, 0x20).Select(c => (char)c)) + "\"\\" +
        string.Concat(Enumerable.Range(0xD800, 0x800).Select(c => (char)c)));

    /// <summary>The canonical UTF-8 bytes of a node (<c>null</c> for a null node).</summary>
    public static byte[] Serialize(JsonNode? node)
    {
        if (node is null)
        {
            return Null;
        }

        using var document = JsonDocument.Parse(node.ToJsonString());
        var buffer = new ArrayBufferWriter<byte>(256);
        Write(document.RootElement, buffer);
        return buffer.WrittenSpan.ToArray();
    }

    public static void Write(JsonElement element, IBufferWriter<byte> output)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var members = new List<(string Name, JsonElement Value)>();
                foreach (var property in element.EnumerateObject())
                {
                    members.Add((property.Name, property.Value));
                }

                members.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
                WriteAscii(output, "{");
                for (var i = 0; i < members.Count; i++)
                {
                    if (i > 0)
                    {
                        WriteAscii(output, ",");
                    }

                    WriteString(members[i].Name, output);
                    WriteAscii(output, ":");
                    Write(members[i].Value, output);
                }

                WriteAscii(output, "}");
                break;
            case JsonValueKind.Array:
                WriteAscii(output, "[");
                var first = true;
                foreach (var item in element.EnumerateArray())
                {
                    if (!first)
                    {
                        WriteAscii(output, ",");
                    }

                    first = false;
                    Write(item, output);
                }

                WriteAscii(output, "]");
                break;
            case JsonValueKind.String:
                WriteString(element.GetString()!, output);
                break;
            case JsonValueKind.Number:
                WriteAscii(output, FormatNumber(element.GetDouble()));
                break;
            case JsonValueKind.True:
                WriteAscii(output, "true");
                break;
            case JsonValueKind.False:
                WriteAscii(output, "false");
                break;
            default:
                WriteAscii(output, "null");
                break;
        }
    }

    /// <summary>A JSON string as JSON.stringify writes it: only <c>"</c>, <c>\</c>, controls and lone surrogates escaped.</summary>
    public static void WriteString(string value, IBufferWriter<byte> output)
    {
        var span = output.GetSpan(value.Length * 3 + 2);
        var n = 0;
        span[n++] = (byte)'"';
        if (!value.AsSpan().ContainsAny(Escaped))
        {
            n += Encoding.UTF8.GetBytes(value, span[n..]);
            span[n++] = (byte)'"';
            output.Advance(n);
            return;
        }

        var start = 0;
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            string? escape = c switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\b' => "\\b",
                '\f' => "\\f",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                < ' ' => $"\\u{(int)c:x4}",
                _ when char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]) => null,
                _ when char.IsLowSurrogate(c) && i > 0 && char.IsHighSurrogate(value[i - 1]) => null,
                _ when char.IsSurrogate(c) => $"\\u{(int)c:x4}",
                _ => null,
            };
            if (escape is null)
            {
                continue;
            }

            n += Encoding.UTF8.GetBytes(value.AsSpan(start, i - start), span[n..]);
            n += Encoding.ASCII.GetBytes(escape, span[n..]);
            start = i + 1;
        }

        n += Encoding.UTF8.GetBytes(value.AsSpan(start), span[n..]);
        span[n++] = (byte)'"';
        output.Advance(n);
    }

    public static void WriteAscii(IBufferWriter<byte> output, string ascii)
    {
        var span = output.GetSpan(ascii.Length);
        for (var i = 0; i < ascii.Length; i++)
        {
            span[i] = (byte)ascii[i];
        }

        output.Advance(ascii.Length);
    }

    /// <summary>ECMAScript Number::toString: integers without a fraction, exponent form outside [1e-6, 1e21).</summary>
    public static string FormatNumber(double value)
    {
        if (double.IsNaN(value) || double.IsInfinity(value))
        {
            throw new ArgumentOutOfRangeException(nameof(value), "JSON has no NaN or Infinity.");
        }

        if (value == 0)
        {
            return "0";
        }

        // Below 2^53 an integral double prints exactly; above it ES6 prints the shortest digits padded with zeros.
        if (Math.Abs(value) < 9007199254740992d && value == Math.Floor(value))
        {
            return value.ToString("0", CultureInfo.InvariantCulture);
        }

        // "E16" is not shortest; "R" is shortest round-trip: take its digits and exponent, lay them out as ES6 does.
        var r = value.ToString("R", CultureInfo.InvariantCulture);
        var negative = r.StartsWith('-');
        if (negative)
        {
            r = r[1..];
        }

        var exponentAt = r.IndexOfAny(['E', 'e']);
        var exponent = exponentAt < 0 ? 0 : int.Parse(r.AsSpan(exponentAt + 1), CultureInfo.InvariantCulture);
        var mantissa = exponentAt < 0 ? r : r[..exponentAt];
        var point = mantissa.IndexOf('.');
        var digits = point < 0 ? mantissa : mantissa.Remove(point, 1);
        var pointPosition = (point < 0 ? mantissa.Length : point) + exponent;
        var leadingZeros = digits.Length - digits.TrimStart('0').Length;
        digits = digits.Trim('0');
        pointPosition -= leadingZeros;

        // digits d1..dk, value = 0.d1..dk * 10^pointPosition, i.e. ES "n" = pointPosition.
        var k = digits.Length;
        var n = pointPosition;
        string text;
        if (k <= n && n <= 21)
        {
            text = digits + new string('0', n - k);
        }
        else if (0 < n && n <= 21)
        {
            text = digits[..n] + "." + digits[n..];
        }
        else if (-6 < n && n <= 0)
        {
            text = "0." + new string('0', -n) + digits;
        }
        else
        {
            var e = n - 1;
            var sign = e < 0 ? "-" : "+";
            text = (k == 1 ? digits : digits[..1] + "." + digits[1..]) + "e" + sign + Math.Abs(e).ToString(CultureInfo.InvariantCulture);
        }

        return negative ? "-" + text : text;
    }
}
