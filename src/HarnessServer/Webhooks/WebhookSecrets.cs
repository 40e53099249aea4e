using System.Security.Cryptography;
using System.Text;

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
    public static WebhookSecrets Load(string path)
    {
        if (!File.Exists(path))
        {
            TryCreate(path);
        }

        var key = Convert.FromBase64String(File.ReadAllText(path).Trim());
        if (key.Length != 32)
        {
            throw new InvalidOperationException($"The webhook secret key '{path}' does not hold 32 bytes (base64).");
        }

        return new WebhookSecrets(key);
    }

    // Written whole to a file of its own, then moved into place: a racing process sees no key or a whole one.
    private static void TryCreate(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temporary = $"{path}.{Guid.NewGuid():N}.tmp";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var file = new FileStream(temporary, options))
        {
            file.Write(Encoding.ASCII.GetBytes(Convert.ToBase64String(RandomNumberGenerator.GetBytes(32))));
        }

        try
        {
            File.Move(temporary, path, overwrite: false);
        }
        catch (IOException) when (File.Exists(path))
        {
            File.Delete(temporary);
        }
    }
}
