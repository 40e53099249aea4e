namespace HarnessServer.Http;

/// <summary>A domain refusal that maps to one problem response with a stable code.</summary>
internal class HarnessProblemException(int status, string code, string detail, string? title = null) : Exception(detail)
{
    public int Status { get; } = status;
    public string Code { get; } = code;
    public string Title { get; } = title ?? code.Replace('_', ' ');

    /// <summary>Extra members of the problem body, such as every error of an invalid document.</summary>
    public virtual IReadOnlyDictionary<string, object?>? Extensions => null;
}
