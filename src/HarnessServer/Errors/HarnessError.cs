namespace HarnessServer.Errors;

/// <summary>What kind of refusal a <see cref="HarnessError"/> is; the HTTP layer gives each kind its status.</summary>
internal enum ErrorKind
{
    /// <summary>The request is malformed or names something invalid (400).</summary>
    Invalid,

    /// <summary>The caller may not do this (403).</summary>
    Forbidden,

    /// <summary>The thing does not exist for this caller (404): another tenant's or user's things included.</summary>
    NotFound,

    /// <summary>The thing is in a state that does not allow this now (409).</summary>
    Conflict,

    /// <summary>The caller's precondition (an <c>If-Match</c> version) no longer holds (412).</summary>
    PreconditionFailed,

    /// <summary>An outside service the server depends on (the model) failed (502).</summary>
    UpstreamFailed,

    /// <summary>A dependency (the audit trail, the database, the sandbox) is unavailable; nothing was done (503).</summary>
    Unavailable,
}

/// <summary>
/// A refusal by the domain, with a stable machine-readable <see cref="Code"/> and a precise detail for a person.
/// Services throw it without knowing about HTTP; <c>Http.ProblemExceptionHandler</c> maps it to one problem response.
/// </summary>
internal class HarnessError(ErrorKind kind, string code, string detail, string? title = null) : Exception(detail)
{
    public ErrorKind Kind { get; } = kind;
    public string Code { get; } = code;
    public string Title { get; } = title ?? code.Replace('_', ' ');

    /// <summary>Extra members of the problem body, such as every error of an invalid document.</summary>
    public virtual IReadOnlyDictionary<string, object?>? Extensions => null;
}
