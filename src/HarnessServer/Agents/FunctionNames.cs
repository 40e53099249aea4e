using System.Security.Cryptography;
using System.Text;

namespace HarnessServer.Agents;

/// <summary>
/// Maps registry tool names to function names that providers and Semantic Kernel accept, and back. OpenAI allows
/// <c>^[a-zA-Z0-9_-]{1,64}$</c> but Semantic Kernel function names allow only <c>[A-Za-z0-9_]</c>, so: every other
/// character becomes <c>_</c> (<c>fs.read</c> -> <c>fs_read</c>). When that is longer than 64 characters, or when
/// several tools come out the same (<c>fs.read</c> and <c>fs_read</c>), each of them except the one already spelled
/// that way gets <c>_</c> plus the first 8 hex digits of the SHA-256 of its original name (the stem cut to fit 64).
/// The mapping depends only on the set of names, so it is the same in every request of a turn and across
/// processes. Back-mapping goes through the same table: a function name not in it is an unknown tool.
/// </summary>
internal sealed class FunctionNames
{
    private const int MaxLength = 64;
    private readonly Dictionary<string, string> _toFunction = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _toTool = new(StringComparer.Ordinal);

    public FunctionNames(IEnumerable<string> tools)
    {
        var names = tools.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var plain = names.ToDictionary(n => n, Sanitize, StringComparer.Ordinal);
        var counts = plain.Values.GroupBy(v => v, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);
        foreach (var name in names)
        {
            var candidate = plain[name];
            var keep = candidate.Length <= MaxLength && (counts[candidate] == 1 || candidate == name);
            var function = keep ? candidate : Hashed(name, candidate);
            _toFunction[name] = function;
            _toTool[function] = name;
        }
    }

    /// <summary>The function name of a tool; tools outside the set (history of a tool no longer offered) are only sanitised.</summary>
    public string ToFunction(string tool) => _toFunction.TryGetValue(tool, out var function) ? function : Sanitize(tool);

    public string? ToTool(string function) => _toTool.GetValueOrDefault(function);

    /// <summary>A name Semantic Kernel accepts as a function name: every character outside <c>[A-Za-z0-9_]</c> becomes <c>_</c>.</summary>
    public static string Sanitize(string name)
    {
        var builder = new StringBuilder(name.Length);
        foreach (var c in name)
        {
            builder.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        }

        return builder.Length == 0 ? "tool" : builder.ToString();
    }

    private static string Hashed(string name, string sanitized)
    {
        var suffix = "_" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(name)))[..8];
        var stem = sanitized.Length + suffix.Length > MaxLength ? sanitized[..(MaxLength - suffix.Length)] : sanitized;
        return stem + suffix;
    }
}
