using System.Text.Json;

namespace HarnessServer.Cli.Auth;

/// <summary>A token from <c>harness login</c>, kept for the server it was issued for until it expires.</summary>
internal sealed record CachedToken(string Server, string AccessToken, DateTimeOffset ExpiresAt);

/// <summary>
/// The token cache: <c>token.json</c> in the user's config folder, created owner-only (0600) from its first byte, in
/// a folder that is owner-only (0700) too. A bearer token is a credential: no other user may read it.
/// </summary>
internal sealed class TokenCache(string directory)
{
    public string FilePath { get; } = Path.Combine(directory, "token.json");

    public CachedToken? Read(Uri server, DateTimeOffset now)
    {
        if (!File.Exists(FilePath))
        {
            return null;
        }

        try
        {
            var token = JsonSerializer.Deserialize<CachedToken>(File.ReadAllText(FilePath), CliJson.Options);
            return token is not null && token.Server == server.ToString() && token.ExpiresAt > now ? token : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public void Write(CachedToken token)
    {
        if (!OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        else
        {
            Directory.CreateDirectory(directory);
        }

        // Written beside and renamed over: a reader never sees half a file, and the new file is 0600 when created.
        var temporary = FilePath + $".{Guid.NewGuid():N}.tmp";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using (var file = new FileStream(temporary, options))
        {
            JsonSerializer.Serialize(file, token, CliJson.Options);
        }

        File.Move(temporary, FilePath, overwrite: true);
    }

    public bool Delete()
    {
        var existed = File.Exists(FilePath);
        File.Delete(FilePath);
        return existed;
    }
}
