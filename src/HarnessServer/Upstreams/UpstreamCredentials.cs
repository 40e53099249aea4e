using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.Options;

namespace HarnessServer.Upstreams;

/// <summary>
/// Encrypts the credential of an upstream MCP server at rest with ASP.NET Core Data Protection. The key ring is a
/// folder outside the database (<see cref="UpstreamOptions.KeysPath"/>, mode 0700), and each ciphertext is bound to its
/// tenant and server by the protector's purpose, so a row copied to another tenant or server does not decrypt.
/// </summary>
internal sealed class UpstreamCredentials
{
    private const string Purpose = "HarnessServer.Upstreams.Credential.v1";
    private readonly IDataProtectionProvider _provider;

    public UpstreamCredentials(IOptions<UpstreamOptions> options, IHostEnvironment environment)
    {
        var keys = new DirectoryInfo(Path.GetFullPath(options.Value.KeysPath, environment.ContentRootPath));
        if (!keys.Exists)
        {
            keys.Create();
        }

        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("Upstream credential keys are kept in a 0700 folder; the server runs on Linux only.");
        }

        File.SetUnixFileMode(keys.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        _provider = DataProtectionProvider.Create(keys, setup => setup.SetApplicationName("HarnessServer.Upstreams"));
    }

    public string Protect(string tenant, string server, string credential) => Protector(tenant, server).Protect(credential);

    public string Unprotect(string tenant, string server, string ciphertext) => Protector(tenant, server).Unprotect(ciphertext);

    private IDataProtector Protector(string tenant, string server) => _provider.CreateProtector(Purpose, tenant, server);
}
