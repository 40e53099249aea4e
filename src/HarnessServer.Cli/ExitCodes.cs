namespace HarnessServer.Cli;

/// <summary>What <c>harness</c> exits with (docs/cli.md lists them for scripts).</summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>The server refused (a problem answer), could not be reached, or the input was wrong.</summary>
    public const int Failed = 1;

    /// <summary>Something changed under you: a policy level was stored again since the plan (412).</summary>
    public const int Changed = 2;

    /// <summary>The audit export does not verify (the reason names the first bad seq).</summary>
    public const int NotVerified = 3;

    /// <summary>No token, or the server did not accept it (401): sign in with <c>harness login</c> or HARNESS_TOKEN.</summary>
    public const int NotSignedIn = 4;

    /// <summary>The tool call did not run to success: denied, rejected, failed or expired.</summary>
    public const int CallNotSucceeded = 5;

    /// <summary>The tool call is held for an approver (its approval id is printed).</summary>
    public const int CallPending = 6;
}
