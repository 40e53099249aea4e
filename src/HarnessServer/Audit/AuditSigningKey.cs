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
        KeyId = Convert.ToHexStringLower(SHA256.HashData(spki))[..16];
    }

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
