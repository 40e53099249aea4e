using System.Buffers;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;
using FsCheck.Xunit;
using HarnessServer.Audit;
using HarnessServer.Tests.Infrastructure;

namespace HarnessServer.Tests.Audit;

/// <summary>
/// Canonical JSON and the chain's hash never throw, whatever the string: every code point class, controls (6 bytes
/// each as <c>\u00xx</c>), lone surrogates. Checked against an independent reading of RFC 8785 here, against
/// System.Text.Json's reader, and against the database verifier and scripts/verify-audit-export.py.
/// </summary>
public sealed class CanonicalJsonPropertyTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    /// <summary>A string drawn across the classes that matter to escaping, from FsCheck's integers.</summary>
    internal static string Draw(int[]? codes)
    {
        var text = new StringBuilder();
        foreach (var code in codes ?? [])
        {
            var n = code & int.MaxValue;
            switch (n % 10)
            {
                case 0: text.Append((char)(n / 10 % 0x20)); break;
                case 1: text.Append(n / 10 % 2 == 0 ? '"' : '\\'); break;
                case 2: text.Append((char)(0x20 + n / 10 % 0x5F)); break;
                case 3: text.Append((char)(0xA0 + n / 10 % (0xD800 - 0xA0))); break;
                case 4: text.Append((char)(0xD800 + n / 10 % 0x400)); break;
                case 5: text.Append((char)(0xDC00 + n / 10 % 0x400)); break;
                case 6: text.Append(char.ConvertFromUtf32(0x10000 + n / 10 % 0x100000)); break;
                case 7: text.Append("\u2028\u2029\uFEFF\uFFFF\uFFFE"[n / 10 % 5]); break;
                case 8: text.Append((char)(0xE000 + n / 10 % 0x2000)); break;
                default: text.Append((char)(0x7F + n / 10 % 0x21)); break;
            }
        }

        return text.ToString();
    }

    /// <summary>RFC 8785 §3.2.2.2 read independently: code point by code point, lone surrogates as \uXXXX.</summary>
    private static byte[] Reference(string value)
    {
        var output = new List<byte> { (byte)'"' };
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
            {
                output.AddRange(Encoding.UTF8.GetBytes(value.Substring(i, 2)));
                i++;
                continue;
            }

            var escape = c switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\b' => "\\b",
                '\f' => "\\f",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ when c < 0x20 || char.IsSurrogate(c) => "\\u" + ((int)c).ToString("x4"),
                _ => null,
            };
            output.AddRange(escape is null ? Encoding.UTF8.GetBytes(c.ToString()) : Encoding.ASCII.GetBytes(escape));
        }

        output.Add((byte)'"');
        return output.ToArray();
    }

    private static byte[] Canonical(string value)
    {
        var buffer = new ArrayBufferWriter<byte>(1);
        CanonicalJson.WriteString(value, buffer);
        return buffer.WrittenSpan.ToArray();
    }

    [Property(MaxTest = 3000)]
    public void Any_string_is_written_as_RFC_8785_says_and_reads_back_unchanged(int[]? codes)
    {
        var value = Draw(codes);

        var canonical = Canonical(value);

        Assert.Equal(Reference(value), canonical);
        Assert.True(Utf8.IsValid(canonical));
        using var document = JsonDocument.Parse(canonical);
        Assert.Equal(value, CanonicalJson.StringOf(document.RootElement));
    }

    [Property(MaxTest = 1000)]
    public void Any_tree_of_strings_canonicalises_the_same_from_nodes_and_from_its_own_text(int[][]? keys, int[][]? values, double number)
    {
        var node = new JsonObject();
        var array = new JsonArray();
        for (var i = 0; i < (keys?.Length ?? 0); i++)
        {
            node[Draw(keys![i])] = values is { Length: > 0 } ? Draw(values[i % values.Length]) : null;
        }

        foreach (var value in values ?? [])
        {
            array.Add(Draw(value));
        }

        node["\u0000array"] = array;
        node["n"] = double.IsFinite(number) ? number : 0;

        var fromNode = CanonicalJson.Serialize(node);
        using var document = JsonDocument.Parse(fromNode);

        Assert.Equal(fromNode, CanonicalJson.Serialize(document.RootElement));
        // System.Text.Json's nodes cannot even list a parsed object whose names escape lone surrogates: that is
        // refused to the caller as an ArgumentException (the server parses only arguments it has checked).
        try
        {
            Assert.Equal(fromNode, CanonicalJson.Serialize(JsonNode.Parse(fromNode)));
        }
        catch (ArgumentException) when (node.Any(m => m.Key.Any(char.IsSurrogate)))
        {
        }
    }

    // 100 controls in 100 characters are 600 bytes; the writer reserved 3 a character and threw inside the batch.
    [Fact]
    public void The_worst_case_string_fits()
    {
        var value = new string('\u0001', 1000) + new string('\udc00', 1000);

        var canonical = Canonical(value);

        Assert.Equal(12002, canonical.Length);
        var hash = AuditHash.Compute(new AuditEventFields(1, value, "2026-01-01T00:00:00.000000Z", value, value, null, value, value,
            default, AuditHash.Genesis, AuditHash.Genesis), new ArrayBufferWriter<byte>(1));
        Assert.Equal(64, hash.Length);
    }

    // Events with such strings go through the real writer and database, then the server's verifier and the
    // standalone script each recompute every hash.
    [Fact]
    public async Task Fuzzed_events_verify_in_the_database_and_with_the_export_script()
    {
        const string tenant = "canonical-fuzz";
        var random = new Random(16);
        int[] Codes() => Enumerable.Range(0, random.Next(0, 40)).Select(_ => random.Next()).ToArray();
        // Text columns cannot hold NUL or a lone surrogate (refused where they enter); the payload (json) can.
        string Storable()
        {
            var value = Draw(Codes());
            var kept = new StringBuilder();
            for (var i = 0; i < value.Length; i++)
            {
                if (char.IsHighSurrogate(value[i]) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1]))
                {
                    kept.Append(value, i++, 2);
                }
                else if (value[i] != '\0' && !char.IsSurrogate(value[i]))
                {
                    kept.Append(value[i]);
                }
            }

            return kept.ToString();
        }

        var entries = Enumerable.Range(0, 300).Select(i =>
        {
            var payload = new JsonObject { ["text"] = Draw(Codes()), [Draw(Codes())] = new JsonArray(Draw(Codes()), random.NextDouble() * 1e30, i) };
            var actor = new AuditActor("fuzz-" + i, Storable() is { Length: > 0 } name ? name : "x");
            var tool = Storable() is { Length: > 0 } t ? t : null;
            return new AuditEntry("fuzz.event", actor, null, tool, Payload: payload);
        }).ToList();

        var chain = app.Service<AuditChain>();
        await Parallel.ForEachAsync(entries, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (entry, ct) =>
            await chain.AppendAsync(tenant, [entry], ct));

        var verification = await app.Service<AuditVerifier>().VerifyAsync(tenant, default);
        Assert.True(verification.Valid, verification.Reason);
        Assert.Equal(300, verification.Checked);

        using var auditor = app.ClientFor("fuzz-auditor", tenant, roles: [HarnessServer.Identity.HarnessRoles.Auditor]);
        var export = Path.Combine(app.DataRoot, "fuzz-export.jsonl");
        await File.WriteAllBytesAsync(export, await auditor.GetByteArrayAsync("/v1/audit/export"));
        var start = new ProcessStartInfo("python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(HarnessApplication.RepositoryRoot, "scripts", "verify-audit-export.py"));
        start.ArgumentList.Add(export);
        using var process = Process.Start(start)!;
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, output);
        Assert.StartsWith("OK 300 events", output);
    }
}
