using System.Security.Cryptography;
using System.Text;

namespace HarnessServer.Data;

/// <summary>
/// A 32-byte symmetric key kept base64 in a file of its own outside the database (the Data Protection key ring's
/// key-encryption key, the webhook secrets' key): created with mode 0600 from the start when missing, so it is never
/// readable by others, not even for a moment.
/// </summary>
internal static class SecretKeyFile
{
    public const int KeySize = 32;

    /// <summary>The key at <paramref name="path"/>, created when missing; <paramref name="what"/> names it in the error.</summary>
    public static byte[] LoadOrCreate(string path, string what)
    {
        if (!File.Exists(path))
        {
            TryCreate(path);
        }

        var key = Convert.FromBase64String(File.ReadAllText(path).Trim());
        return key.Length == KeySize
            ? key
            : throw new InvalidOperationException($"The {what} '{path}' does not hold {KeySize} bytes (base64).");
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
            file.Write(Encoding.ASCII.GetBytes(Convert.ToBase64String(RandomNumberGenerator.GetBytes(KeySize))));
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
