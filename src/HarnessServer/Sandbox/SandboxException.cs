namespace HarnessServer.Sandbox;

/// <summary>A refusal of a workspace or sandbox operation, with a stable <see cref="Code"/> and a precise detail.</summary>
internal sealed class SandboxException(string code, string detail) : Exception(detail)
{
    public string Code { get; } = code;
}

/// <summary>The stable error codes of the file tools and the sandbox.</summary>
internal static class SandboxErrors
{
    public const string InvalidPath = "invalid_path";
    public const string PathOutsideWorkspace = "path_outside_workspace";
    public const string SymlinkInPath = "symlink_in_path";
    public const string NotFound = "not_found";
    public const string NotAFile = "not_a_file";
    public const string NotADirectory = "not_a_directory";
    public const string IsADirectory = "is_a_directory";
    public const string HardLink = "hard_link";
    public const string TooLarge = "too_large";
    public const string PermissionDenied = "permission_denied";
    public const string Busy = "busy";
    public const string IoError = "io_error";
    public const string InvalidArgument = "invalid_argument";
    public const string SandboxUnavailable = "sandbox_unavailable";
    public const string WorkspaceQuotaExceeded = "workspace_quota_exceeded";
}
