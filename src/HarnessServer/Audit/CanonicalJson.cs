using System.Buffers;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;

namespace HarnessServer.Audit;

/// <summary>
/// RFC 8785 (JCS) canonical JSON: object members sorted by the UTF-16 code units of their names, no whitespace,
/// strings escaped as ECMAScript's JSON.stringify does, numbers in ECMAScript's shortest form. Output is UTF-8.
/// Any .NET string can be written, lone surrogates included (as <c>\udxxx</c>, as JSON.stringify does), and JSON text
/// whose strings escape lone surrogates is read without loss: one bad string must never fail the audit of others.
/// </summary>
internal static class CanonicalJson
{
    private static readonly byte[] Null = "null"u8.ToArray();

    // The most UTF-8 bytes one UTF-16 code unit becomes: "\u001f" or "\udc00" (a BMP character is at most 3).
    private const int MaxBytesPerChar = 6;

    // Characters written at once between two escapes; bounds the span asked of the output for very long strings.
    private const int Chunk = 4096;

    // Every character JSON.stringify escapes, plus surrogates (escaped only when lone): strings without any take the fast path.
    private static readonly SearchValues<char> Escaped = SearchValues.Create(
        string.Concat(Enumerable.Range(0, 0x20).Select(c => (char)c)) + "\"\\" +
        string.Concat(Enumerable.Range(0xD800, 0x800).Select(c => (char)c)));

    /// <summary>The canonical UTF-8 bytes of a node (<c>null</c> for a null node).</summary>
    /// <exception cref="ArgumentException">The node holds something JSON has no form for (NaN, an unreadable value).</exception>
    public static byte[] Serialize(JsonNode? node)
    {
        if (node is null)
        {
            return Null;
        }

        var buffer = new ArrayBufferWriter<byte>(256);
        try
        {
            Write(node, buffer);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or JsonException or ArgumentOutOfRangeException)
        {
            throw new ArgumentException($"The value cannot be written as canonical JSON: {e.Message}", nameof(node), e);
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The canonical UTF-8 bytes of JSON text's element.</summary>
    public static byte[] Serialize(JsonElement element)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        Write(element, buffer);
        return buffer.WrittenSpan.ToArray();
    }

    private static void Write(JsonNode? node, IBufferWriter<byte> output)
    {
        switch (node)
        {
            case null:
                output.Write(Null);
                break;
            case JsonObject obj:
                var members = new List<KeyValuePair<string, JsonNode?>>(obj.Count);
                members.AddRange(obj);
                members.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
                WriteAscii(output, "{");
                for (var i = 0; i < members.Count; i++)
                {
                    if (i > 0)
                    {
                        WriteAscii(output, ",");
                    }

                    WriteString(members[i].Key, output);
                    WriteAscii(output, ":");
                    Write(members[i].Value, output);
                }

                WriteAscii(output, "}");
                break;
            case JsonArray array:
                WriteAscii(output, "[");
                for (var i = 0; i < array.Count; i++)
                {
                    if (i > 0)
                    {
                        WriteAscii(output, ",");
                    }

                    Write(array[i], output);
                }

                WriteAscii(output, "]");
                break;
            case JsonValue value when value.TryGetValue<JsonElement>(out var element):
                Write(element, output);
                break;
            case JsonValue value when value.TryGetValue<string>(out var text):
                WriteString(text, output);
                break;
            case JsonValue value when value.TryGetValue<bool>(out var flag):
                WriteAscii(output, flag ? "true" : "false");
                break;
            default:
                // Numbers, Guids, dates...: their JSON text is ASCII the serializer writes, read back as an element.
                using (var document = JsonDocument.Parse(node.ToJsonString()))
                {
                    Write(document.RootElement, output);
                }

                break;
        }
    }

    public static void Write(JsonElement element, IBufferWriter<byte> output)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var members = new List<(string Name, JsonElement Value)>();
                foreach (var property in element.EnumerateObject())
                {
                    members.Add((NameOf(property), property.Value));
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
                WriteString(StringOf(element), output);
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

    /// <summary>
    /// The string an element holds, lone surrogates included: System.Text.Json refuses to read an escaped lone
    /// surrogate (<c>"\ud800"</c>) as a string, though JSON allows it and JSON.stringify writes it.
    /// </summary>
    public static string StringOf(JsonElement element)
    {
        try
        {
            return element.GetString()!;
        }
        catch (InvalidOperationException)
        {
            var raw = JsonMarshal.GetRawUtf8Value(element);
            return Unescape(raw[1..^1]);
        }
    }

    private static string NameOf(JsonProperty property)
    {
        try
        {
            return property.Name;
        }
        catch (InvalidOperationException)
        {
            return Unescape(JsonMarshal.GetRawUtf8PropertyName(property));
        }
    }

    /// <summary>The UTF-16 code units of a JSON string's escaped UTF-8 body; bytes that are not UTF-8 become U+FFFD.</summary>
    internal static string Unescape(ReadOnlySpan<byte> escaped)
    {
        var text = new StringBuilder(escaped.Length);
        while (!escaped.IsEmpty)
        {
            var backslash = escaped.IndexOf((byte)'\\');
            var run = backslash < 0 ? escaped : escaped[..backslash];
            text.Append(Encoding.UTF8.GetString(run));
            if (backslash < 0)
            {
                break;
            }

            // The reader has already checked the escapes: a known letter, or 'u' and four hex digits.
            var letter = escaped[backslash + 1];
            if (letter == (byte)'u')
            {
                text.Append((char)int.Parse(Encoding.ASCII.GetString(escaped.Slice(backslash + 2, 4)), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                escaped = escaped[(backslash + 6)..];
                continue;
            }

            text.Append(letter switch
            {
                (byte)'b' => '\b',
                (byte)'f' => '\f',
                (byte)'n' => '\n',
                (byte)'r' => '\r',
                (byte)'t' => '\t',
                _ => (char)letter,
            });
            escaped = escaped[(backslash + 2)..];
        }

        return text.ToString();
    }

    /// <summary>A JSON string as JSON.stringify writes it: only <c>"</c>, <c>\</c>, controls and lone surrogates escaped.</summary>
    public static void WriteString(string value, IBufferWriter<byte> output)
    {
        WriteAscii(output, "\"");
        var span = value.AsSpan();
        if (!span.ContainsAny(Escaped))
        {
            WriteText(span, output);
            WriteAscii(output, "\"");
            return;
        }

        var start = 0;
        for (var i = 0; i < span.Length; i++)
        {
            var c = span[i];
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
                _ when char.IsHighSurrogate(c) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1]) => null,
                _ when char.IsLowSurrogate(c) && i > 0 && char.IsHighSurrogate(span[i - 1]) => null,
                _ when char.IsSurrogate(c) => $"\\u{(int)c:x4}",
                _ => null,
            };
            if (escape is null)
            {
                continue;
            }

            WriteText(span[start..i], output);
            WriteAscii(output, escape);
            start = i + 1;
        }

        WriteText(span[start..], output);
        WriteAscii(output, "\"");
    }

    // A run holds no lone surrogate (those are escaped), so it is valid UTF-16 and never needs replacing; it is
    // written in chunks so that the span asked of the output stays small whatever the string's length.
    private static void WriteText(ReadOnlySpan<char> run, IBufferWriter<byte> output)
    {
        while (!run.IsEmpty)
        {
            var destination = output.GetSpan(Math.Min(run.Length, Chunk) * MaxBytesPerChar);
            var status = Utf8.FromUtf16(run, destination, out var read, out var written, replaceInvalidSequences: true, isFinalBlock: true);
            output.Advance(written);
            run = run[read..];
            if (status is not (OperationStatus.Done or OperationStatus.DestinationTooSmall))
            {
                throw new InvalidOperationException($"UTF-16 to UTF-8 stopped with {status}.");
            }
        }
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
