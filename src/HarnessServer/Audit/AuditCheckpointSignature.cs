using System.Buffers;
using System.Security.Cryptography;

namespace HarnessServer.Audit;

/// <summary>A signed checkpoint as the API shows it.</summary>
internal sealed record AuditCheckpoint(string Tenant, long Seq, string Hash, string At, string KeyId, string Signature);

/// <summary>The public half of the checkpoint key.</summary>
internal sealed record AuditPublicKey(string KeyId, string Algorithm, string Spki, string Pem);

/// <summary>
/// What a checkpoint's ES256 signature covers, and its check against a public key as the API publishes it (SPKI): the
/// server's checks and the harness CLI's offline verify share this file.
/// </summary>
internal static class AuditCheckpointSignature
{
    /// <summary>The canonical JSON <c>{"at":…,"hash":…,"seq":…,"tenant":…}</c> that a checkpoint signature covers.</summary>
    public static byte[] SignedBytes(string tenant, long seq, string hash, string at)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        CanonicalJson.WriteAscii(buffer, "{\"at\":");
        CanonicalJson.WriteString(at, buffer);
        CanonicalJson.WriteAscii(buffer, ",\"hash\":");
        CanonicalJson.WriteString(hash, buffer);
        CanonicalJson.WriteAscii(buffer, $",\"seq\":{seq},\"tenant\":");
        CanonicalJson.WriteString(tenant, buffer);
        CanonicalJson.WriteAscii(buffer, "}");
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>A key's id: the first 16 hex characters of SHA-256 over its DER SubjectPublicKeyInfo.</summary>
    public static string KeyIdOf(ReadOnlySpan<byte> spki) => Convert.ToHexStringLower(SHA256.HashData(spki))[..16];

    /// <summary>
    /// True when the key whose DER SubjectPublicKeyInfo is <paramref name="spki"/> signed exactly these values, and the
    /// checkpoint names that key (its id is computed from the key, never taken from what travels with it).
    /// </summary>
    public static bool Verify(AuditCheckpoint checkpoint, ReadOnlySpan<byte> spki)
    {
        Span<byte> signature = stackalloc byte[128];
        if (checkpoint.KeyId != KeyIdOf(spki) || !Convert.TryFromBase64String(checkpoint.Signature, signature, out var length))
        {
            return false;
        }

        using var ecdsa = ECDsa.Create();
        try
        {
            ecdsa.ImportSubjectPublicKeyInfo(spki, out _);
        }
        catch (CryptographicException)
        {
            return false;
        }

        return ecdsa.VerifyData(SignedBytes(checkpoint.Tenant, checkpoint.Seq, checkpoint.Hash, checkpoint.At), signature[..length],
            HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
    }
}
