using System.Diagnostics.CodeAnalysis;
using HarnessServer.Errors;

namespace HarnessServer.Memory;

internal enum MemoryNamespaceKind
{
    /// <summary>Every member of the tenant.</summary>
    Org,
    /// <summary>Members of one team.</summary>
    Team,
    /// <summary>The caller only.</summary>
    User,
    /// <summary>The owner of one session.</summary>
    Session,
}

/// <summary>
/// A memory namespace as callers write it: <c>org</c>, <c>team:&lt;name&gt;</c>, <c>user</c> or <c>session:&lt;id&gt;</c>.
/// <c>user</c> names no one: it is always the caller's own namespace.
/// </summary>
internal readonly record struct MemoryNamespace
{
    private const int MaxNameLength = 200;

    private MemoryNamespace(MemoryNamespaceKind kind, string? name)
    {
        Kind = kind;
        Name = name;
    }

    public MemoryNamespaceKind Kind { get; }

    /// <summary>The team name or session id; null for <c>org</c> and <c>user</c>.</summary>
    public string? Name { get; }

    public static MemoryNamespace Org { get; } = new(MemoryNamespaceKind.Org, null);
    public static MemoryNamespace User { get; } = new(MemoryNamespaceKind.User, null);

    /// <summary>Parses a namespace; a malformed one is a 400 problem with code <c>invalid_namespace</c>.</summary>
    public static MemoryNamespace Parse(string? value) =>
        TryParse(value, out var parsed, out var error)
            ? parsed
            : throw new HarnessError(ErrorKind.Invalid, "invalid_namespace", error, "Invalid namespace");

    public static bool TryParse(string? value, out MemoryNamespace parsed, [NotNullWhen(false)] out string? error)
    {
        parsed = default;
        if (string.IsNullOrEmpty(value))
        {
            error = "The namespace is empty; expected org, team:<name>, user or session:<id>.";
            return false;
        }

        var colon = value.IndexOf(':');
        var kind = colon < 0 ? value : value[..colon];
        var name = colon < 0 ? null : value[(colon + 1)..];
        switch (kind)
        {
            case "org" or "user" when name is null:
                parsed = kind == "org" ? Org : User;
                error = null;
                return true;
            case "org":
                error = $"The namespace '{value}' is invalid: 'org' takes no name; write 'org'.";
                return false;
            case "user":
                error = $"The namespace '{value}' is invalid: 'user' takes no name, it is always the caller's own; write 'user'.";
                return false;
            case "team" or "session":
                if (NameError(kind, name) is { } nameError)
                {
                    error = $"The namespace '{value}' is invalid: {nameError}";
                    return false;
                }

                parsed = new MemoryNamespace(kind == "team" ? MemoryNamespaceKind.Team : MemoryNamespaceKind.Session, name);
                error = null;
                return true;
            default:
                error = $"The namespace '{value}' is invalid: unknown kind '{kind}'; expected org, team:<name>, user or session:<id>.";
                return false;
        }
    }

    private static string? NameError(string kind, string? name)
    {
        var what = kind == "team" ? "a team name" : "a session id";
        if (string.IsNullOrEmpty(name))
        {
            return $"'{kind}' needs {what} after '{kind}:'.";
        }

        if (name.Length > MaxNameLength)
        {
            return $"{what} is {name.Length} characters long; the limit is {MaxNameLength}.";
        }

        if (name.Any(char.IsControl))
        {
            return $"{what} must not contain control characters.";
        }

        return name.Trim().Length != name.Length ? $"{what} must not start or end with white space." : null;
    }

    public override string ToString() => Kind switch
    {
        MemoryNamespaceKind.Org => "org",
        MemoryNamespaceKind.Team => $"team:{Name}",
        MemoryNamespaceKind.User => "user",
        _ => $"session:{Name}",
    };
}
