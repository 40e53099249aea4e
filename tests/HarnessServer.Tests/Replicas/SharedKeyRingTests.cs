using System.Security.Claims;
using System.Security.Cryptography;
using HarnessServer.Tests.Infrastructure;
using HarnessServer.Upstreams;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.DataProtection;

namespace HarnessServer.Tests.Replicas;

/// <summary>
/// The Data Protection key ring is one for every replica: a console cookie or an upstream credential protected on one
/// host is read on another over the same database, and the ring's keys are stored encrypted.
/// </summary>
public sealed class SharedKeyRingTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    // The console's cookie format as the cookie handler builds it (PostConfigureCookieAuthenticationOptions) from the
    // host's Data Protection provider.
    private static TicketDataFormat ConsoleCookies(HarnessApplication host) => new(host.Service<IDataProtectionProvider>().CreateProtector(
        "Microsoft.AspNetCore.Authentication.Cookies.CookieAuthenticationMiddleware", HarnessServer.WebConsole.ConsoleAuthentication.CookieScheme, "v2"));

    [Fact]
    public async Task A_console_cookie_and_an_upstream_credential_protected_on_one_replica_are_read_on_another()
    {
        await using var other = await app.StartSiblingAsync();
        var ticket = new AuthenticationTicket(
            new ClaimsPrincipal(new ClaimsIdentity([new Claim("sub", "carla"), new Claim("tenant", "ring")], "test")),
            HarnessServer.WebConsole.ConsoleAuthentication.CookieScheme);

        var cookie = ConsoleCookies(app).Protect(ticket);
        var read = ConsoleCookies(other).Unprotect(cookie);
        Assert.Equal("carla", read?.Principal.FindFirst("sub")?.Value);

        var credential = other.Service<UpstreamCredentials>().Protect("ring", "docs", "Bearer upstream-secret");
        Assert.Equal("Bearer upstream-secret", app.Service<UpstreamCredentials>().Unprotect("ring", "docs", credential));
        Assert.Throws<CryptographicException>(() => app.Service<UpstreamCredentials>().Unprotect("ring", "other-server", credential));

        // The keys are in the database, encrypted under the key-encryption key outside it.
        var keys = await app.CountAsync("SELECT count(*) FROM data_protection_keys");
        Assert.True(keys >= 1);
        Assert.Equal(0, await app.CountAsync("SELECT count(*) FROM data_protection_keys WHERE xml LIKE '%<masterKey%' OR xml NOT LIKE '%<encryptedKey%'"));
    }
}
