using System.Globalization;
using HarnessServer.Audit;

namespace HarnessServer.WebConsole;

/// <summary>
/// The audit page's filters as they travel in its query string (<c>user</c>, <c>tool</c>, <c>type</c>, <c>outcome</c>,
/// <c>from</c>, <c>to</c>), shared by the page, its paging links and its export link so all three mean the same set.
/// Times are UTC: the browser's <c>datetime-local</c> value (<c>2026-12-02T04:30</c>) or RFC 3339 with an offset.
/// </summary>
internal sealed record AuditFilterQuery(string? User, string? Tool, string? Type, string? Outcome, string? From, string? To)
{
    private const int MaxLength = 200;
    private static readonly string[] LocalFormats = ["yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFF", "yyyy-MM-dd"];

    public static AuditFilterQuery Read(IQueryCollection query) => new(
        Clean(query["user"]), Clean(query["tool"]), Clean(query["type"]), Clean(query["outcome"]), Clean(query["from"]), Clean(query["to"]));

    /// <summary>The filter, or why the query string does not make one (shown to the reviewer; the export answers 400).</summary>
    public (AuditEventFilter? Filter, string? Error) Parse()
    {
        foreach (var (name, value) in new[] { ("user", User), ("tool", Tool), ("type", Type), ("outcome", Outcome) })
        {
            if (value is { Length: > MaxLength })
            {
                return (null, $"The {name} filter is longer than {MaxLength} characters.");
            }
        }

        if (!TryTime(From, out var from))
        {
            return (null, $"'{From}' is not a time: use 2026-12-02T04:30 (UTC) or RFC 3339.");
        }

        if (!TryTime(To, out var to))
        {
            return (null, $"'{To}' is not a time: use 2026-12-02T04:30 (UTC) or RFC 3339.");
        }

        if (from > to)
        {
            return (null, "The time range ends before it starts.");
        }

        return (new AuditEventFilter(User, Tool, Type, Outcome, from, to), null);
    }

    /// <summary>The filters as query-string pairs (empty ones left out), to put after a path with <paramref name="extra"/>.</summary>
    public string ToQueryString(params (string Name, string Value)[] extra)
    {
        var pairs = new List<string>();
        foreach (var (name, value) in extra.Concat(Pairs()))
        {
            pairs.Add($"{name}={Uri.EscapeDataString(value)}");
        }

        return pairs.Count == 0 ? "" : "?" + string.Join('&', pairs);
    }

    private IEnumerable<(string, string)> Pairs()
    {
        foreach (var (name, value) in new[] { ("user", User), ("tool", Tool), ("type", Type), ("outcome", Outcome), ("from", From), ("to", To) })
        {
            if (value is not null)
            {
                yield return (name, value);
            }
        }
    }

    private static bool TryTime(string? text, out DateTimeOffset? time)
    {
        time = null;
        if (text is null)
        {
            return true;
        }

        if (DateTime.TryParseExact(text, LocalFormats, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var local))
        {
            time = new DateTimeOffset(local, TimeSpan.Zero);
            return true;
        }

        // RFC 3339 only with an explicit offset or Z: a bare time is read as UTC above, never as the server's zone.
        if (text.Length > 19 && (text.EndsWith('Z') || text[^6] is '+' or '-')
            && DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.None, out var offset))
        {
            time = offset.ToUniversalTime();
            return true;
        }

        return false;
    }

    private static string? Clean(string? value) => value?.Trim() is { Length: > 0 } text ? text : null;
}
