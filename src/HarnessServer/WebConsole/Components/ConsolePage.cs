using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using HarnessServer.Errors;
using HarnessServer.Identity;
using Microsoft.AspNetCore.Components;

namespace HarnessServer.WebConsole.Components;

/// <summary>What every console page has: the request, its signed-in caller, and how JSON and times are shown.</summary>
public abstract class ConsolePage : ComponentBase
{
    private static readonly JsonSerializerOptions Indented = new()
    {
        WriteIndented = true,
        // Shown as text (Razor encodes it), so no need to escape '<' or non-ASCII inside the JSON too.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>Longest JSON shown inline; a longer result is cut with a note (the API returns it whole).</summary>
    protected const int MaxShownJson = 20_000;

    [CascadingParameter]
    public HttpContext HttpContext { get; set; } = default!;

    [Inject]
    public NavigationManager Navigation { get; set; } = default!;

    internal CurrentUser Caller => HttpContext.GetCurrentUser();

    protected static string Pretty(JsonElement? element)
    {
        if (element is not { } value || value.ValueKind is JsonValueKind.Undefined)
        {
            return "";
        }

        var text = JsonSerializer.Serialize(value, Indented);
        return text.Length <= MaxShownJson ? text : text[..MaxShownJson] + $"\n… cut at {MaxShownJson:N0} of {text.Length:N0} characters";
    }

    protected static string Text(JsonElement? element, string property) =>
        element is { ValueKind: JsonValueKind.Object } value && value.TryGetProperty(property, out var p)
            ? p.ValueKind switch { JsonValueKind.String => p.GetString() ?? "", JsonValueKind.Null => "", _ => p.GetRawText() }
            : "";

    protected static string When(DateTimeOffset? time) => time is { } t ? t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'") : "";

    /// <summary>A short digest of what a live region shows, so the page's script swaps it only when it changed.</summary>
    protected static string Version(IEnumerable<string> parts) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n', parts))))[..16];

    /// <summary>What a refusal of a service says to the person, with its stable code.</summary>
    internal static string Describe(HarnessError error) => $"{error.Message} ({error.Code})";
}
