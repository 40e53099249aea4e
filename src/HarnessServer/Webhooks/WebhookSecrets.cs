using System.Security.Cryptography;
using System.Text;
using HarnessServer.Data;

namespace HarnessServer.Webhooks;

/// <summary>
/// Encrypts webhook secrets at rest with AES-256-GCM under a key kept in a file outside the database, so a copy of
/// the database alone does not give the secrets that sign webhooks. The tenant is the associated data: a ciphertext
/// moved to another tenant's row does not decrypt.
/// </summary>
internal sealed class WebhookSecrets
{
    private const byte Format = 1;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private readonly byte[] _key;

    private WebhookSecrets(byte[] key) => _key = key;

    public byte[] Protect(string tenant, string secret)
    {
        var plain = Encoding.UTF8.GetBytes(secret);
        var sealedBox = new byte[1 + NonceSize + TagSize + plain.Length];
        sealedBox[0] = Format;
        var nonce = sealedBox.AsSpan(1, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(_key, TagSize);
        aes.Encrypt(nonce, plain, sealedBox.AsSpan(1 + NonceSize + TagSize), sealedBox.AsSpan(1 + NonceSize, TagSize), Encoding.UTF8.GetBytes(tenant));
        return sealedBox;
    }

    /// <summary>The secret, or null when the ciphertext is not one this key made for this tenant.</summary>
    public byte[]? Unprotect(string tenant, byte[] sealedBox)
    {
        if (sealedBox.Length < 1 + NonceSize + TagSize || sealedBox[0] != Format)
        {
            return null;
        }

        var plain = new byte[sealedBox.Length - 1 - NonceSize - TagSize];
        try
        {
            using var aes = new AesGcm(_key, TagSize);
            aes.Decrypt(sealedBox.AsSpan(1, NonceSize), sealedBox.AsSpan(1 + NonceSize + TagSize), sealedBox.AsSpan(1 + NonceSize, TagSize), plain,
                Encoding.UTF8.GetBytes(tenant));
            return plain;
        }
        catch (AuthenticationTagMismatchException)
        {
            return null;
        }
    }

    /// <summary>Loads the 32-byte key (base64) at <paramref name="path"/>, creating it with mode 0600 when missing.</summary>
    public static WebhookSecrets Load(string path) => new(SecretKeyFile.LoadOrCreate(path, "webhook secret key"));
}
