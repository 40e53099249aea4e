using System.Security.Cryptography;
using System.Text;

namespace HarnessServer.Audit;

/// <summary>
/// The ECDSA P-256 key that signs checkpoints. It lives in a PEM file outside the database, so whoever can rewrite
/// the database cannot also forge a checkpoint over a rewritten chain.
/// </summary>
internal sealed class AuditSigningKey : IDisposable
{
    private readonly ECDsa _key;

    private AuditSigningKey(ECDsa key)
    {
        _key = key;
        var spki = key.ExportSubjectPublicKeyInfo();
        PublicKeySpki = Convert.ToBase64String(spki);
        PublicKeyPem = key.ExportSubjectPublicKeyInfoPem();
        KeyId = IdOf(spki);
    }

    /// <summary>A key's id: the first 16 hex characters of SHA-256 over its DER SubjectPublicKeyInfo.</summary>
    public static string IdOf(ReadOnlySpan<byte> spki) => AuditCheckpointSignature.KeyIdOf(spki);

    /// <summary>The first 16 hex characters of SHA-256 over the DER SubjectPublicKeyInfo.</summary>
    public string KeyId { get; }

    /// <summary>Base64 of the DER SubjectPublicKeyInfo.</summary>
    public string PublicKeySpki { get; }

    public string PublicKeyPem { get; }

    /// <summary>ECDSA P-256 with SHA-256, DER (RFC 3279) encoded, as <c>openssl dgst -sha256 -verify</c> expects.</summary>
    public byte[] Sign(ReadOnlySpan<byte> data) => _key.SignData(data, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

    public bool Verify(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature) =>
        _key.VerifyData(data, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

    public static AuditSigningKey Generate() => new(ECDsa.Create(ECCurve.NamedCurves.nistP256));

    /// <summary>Loads the PKCS#8 PEM at <paramref name="path"/>, creating it (mode 0600) when allowed and missing.</summary>
    public static AuditSigningKey Load(string path, bool generateIfMissing)
    {
        if (!File.Exists(path))
        {
            if (!generateIfMissing)
            {
                throw new InvalidOperationException(
                    $"The audit signing key '{path}' does not exist. Set Harness:Audit:SigningKeyPath to a PKCS#8 PEM file " +
                    "holding an ECDSA P-256 private key (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256), " +
                    "or set Harness:Audit:GenerateSigningKey=true to have the server create one.");
            }

            TryCreate(path);
        }

        var key = ECDsa.Create();
        key.ImportFromPem(File.ReadAllText(path));
        if (key.KeySize != 256)
        {
            throw new InvalidOperationException($"The audit signing key '{path}' is not an ECDSA P-256 key.");
        }

        return new AuditSigningKey(key);
    }

    // CreateNew: when two processes race, one writes the key and both then read the same file.
    private static void TryCreate(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        try
        {
            using var file = new FileStream(path, options);
            file.Write(Encoding.ASCII.GetBytes(key.ExportPkcs8PrivateKeyPem()));
        }
        catch (IOException) when (File.Exists(path))
        {
        }
    }

    public void Dispose() => _key.Dispose();
}

/// <summary>
/// Public keys of signing keys the server no longer signs with (<c>Harness:Audit:RetiredPublicKeyPaths</c>), so the
/// checkpoints they signed still verify after a rotation. Only public keys: nothing can be signed with them.
/// </summary>
internal sealed class AuditRetiredKeys : IDisposable
{
    private readonly Dictionary<string, ECDsa> _keys = new(StringComparer.Ordinal);

    public static AuditRetiredKeys None { get; } = new([]);

    public AuditRetiredKeys(IEnumerable<string> paths)
    {
        var keys = new List<AuditPublicKey>();
        foreach (var path in paths)
        {
            if (!File.Exists(path))
            {
                throw new InvalidOperationException($"The retired audit key '{path}' (Harness:Audit:RetiredPublicKeyPaths) does not exist.");
            }

            var key = ECDsa.Create();
            // A public key PEM, or the retired private key itself: only its public half is kept.
            key.ImportFromPem(File.ReadAllText(path));
            if (key.KeySize != 256)
            {
                throw new InvalidOperationException($"The retired audit key '{path}' is not an ECDSA P-256 key.");
            }

            var spki = key.ExportSubjectPublicKeyInfo();
            var id = AuditSigningKey.IdOf(spki);
            if (_keys.TryAdd(id, key))
            {
                keys.Add(new AuditPublicKey(id, "ES256", Convert.ToBase64String(spki), key.ExportSubjectPublicKeyInfoPem()));
            }
        }

        Keys = keys;
    }

    public IReadOnlyList<AuditPublicKey> Keys { get; }

    /// <summary>True when <paramref name="keyId"/> is a retired key and its signature over the data holds.</summary>
    public bool Verify(string keyId, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature) =>
        _keys.TryGetValue(keyId, out var key) && key.VerifyData(data, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

    public void Dispose()
    {
        foreach (var key in _keys.Values)
        {
            key.Dispose();
        }
    }
}
