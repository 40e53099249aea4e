using Microsoft.AspNetCore.DataProtection;

namespace HarnessServer.Upstreams;

/// <summary>
/// Encrypts the credential of an upstream MCP server at rest with ASP.NET Core Data Protection, on the key ring every
/// replica shares (<see cref="Data.DataProtectionKeyRing"/>: keys in the database, themselves encrypted with a key
/// outside it), and each ciphertext is bound to its tenant and server by the protector's purpose, so a row copied to
/// another tenant or server does not decrypt.
/// </summary>
internal sealed class UpstreamCredentials(IDataProtectionProvider provider)
{
    private const string Purpose = "HarnessServer.Upstreams.Credential.v1";

    public string Protect(string tenant, string server, string credential) => Protector(tenant, server).Protect(credential);

    public string Unprotect(string tenant, string server, string ciphertext) => Protector(tenant, server).Unprotect(ciphertext);

    private IDataProtector Protector(string tenant, string server) => provider.CreateProtector(Purpose, tenant, server);
}
