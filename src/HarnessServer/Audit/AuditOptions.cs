namespace HarnessServer.Audit;

/// <summary>Configuration under <c>Harness:Audit</c>.</summary>
internal sealed class AuditOptions
{
    /// <summary>PKCS#8 PEM of the ECDSA P-256 checkpoint signing key; relative paths are under the content root.</summary>
    public string SigningKeyPath { get; set; } = ".data/audit-signing-key.pem";

    /// <summary>
    /// PEM files of the public keys of signing keys used before a rotation (relative paths are under the content
    /// root), so the checkpoints they signed still verify.
    /// </summary>
    public string[] RetiredPublicKeyPaths { get; set; } = [];

    /// <summary>Create the key when it is missing (always allowed in Development).</summary>
    public bool GenerateSigningKey { get; set; }

    /// <summary>How often tenants whose head moved get a signed checkpoint.</summary>
    public TimeSpan CheckpointInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// A file (relative to the content root) every new signed checkpoint is appended to as one JSON line, an anchor
    /// kept outside the database (see <see cref="AuditAnchorFile"/>); none when empty.
    /// </summary>
    public string? AnchorPath { get; set; }

    /// <summary>
    /// A receiver every new signed checkpoint is POSTed to (see <see cref="AuditAnchorPush"/>): https, or http to a
    /// loopback address; none when empty.
    /// </summary>
    public string? AnchorUrl { get; set; }

    /// <summary>Bearer token sent to <see cref="AnchorUrl"/>; none when empty. A secret: keep it out of the repository.</summary>
    public string? AnchorToken { get; set; }

    /// <summary>The most appends one group-commit transaction carries.</summary>
    public int MaxBatchSize { get; set; } = AuditChain.DefaultMaxBatchSize;
}
