using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using HarnessServer.Identity;
using HarnessServer.Tests.Infrastructure;
using Microsoft.IdentityModel.Tokens;

namespace HarnessServer.Tests.Identity;

public sealed class AuthenticationTests(HarnessApplication app) : IClassFixture<HarnessApplication>
{
    [Fact]
    public async Task Valid_token_answers_me_with_tenant_teams_and_roles()
    {
        using var client = app.ClientFor("alice", "acme", ["platform", "data"], [HarnessRoles.Admin]);

        var me = await client.GetFromJsonAsync<MeResponse>("/v1/me");

        Assert.NotNull(me);
        Assert.Equal(("alice", "acme"), (me.User, me.Tenant));
        Assert.Equal(["data", "platform"], me.Teams);
        Assert.Equal([HarnessRoles.Admin], me.Roles);
    }

    [Fact]
    public async Task Two_tenants_each_see_only_themselves()
    {
        using var acme = app.ClientFor("bob", "acme", ["platform"]);
        using var globex = app.ClientFor("bob", "globex", ["research"]);

        var a = await acme.GetFromJsonAsync<MeResponse>("/v1/me");
        var g = await globex.GetFromJsonAsync<MeResponse>("/v1/me");

        Assert.Equal("acme", a!.Tenant);
        Assert.Equal(["platform"], a.Teams);
        Assert.Equal("globex", g!.Tenant);
        Assert.Equal(["research"], g.Teams);
    }

    [Fact]
    public async Task Users_and_teams_are_provisioned_just_in_time()
    {
        using var client = app.ClientFor("carol", "initech", ["ops", "sec"], name: "Carol C");
        (await client.GetAsync("/v1/me")).EnsureSuccessStatusCode();

        await using var connection = new Npgsql.NpgsqlConnection(app.ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand("""
            SELECT u.display_name, array_agg(m.team_name ORDER BY m.team_name)
            FROM users u JOIN team_memberships m ON m.tenant_id = u.tenant_id AND m.user_id = u.id
            WHERE u.tenant_id = 'initech' AND u.id = 'carol' GROUP BY u.display_name
            """, connection);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        Assert.Equal("Carol C", reader.GetString(0));
        Assert.Equal(["ops", "sec"], reader.GetFieldValue<string[]>(1));
    }

    public static TheoryData<string, string> RejectedTokens => new()
    {
        { "missing tenant claim", "tenant" },
        { "bad signature", "signature" },
        { "wrong issuer", "issuer" },
        { "wrong audience", "audience" },
        { "expired", "expired" },
        { "alg none", "unsigned" },
        { "garbage", "malformed" },
    };

    [Theory]
    [MemberData(nameof(RejectedTokens))]
    public async Task Rejected_token_gets_401_with_problem_naming_the_reason(string kind, string expectedWord)
    {
        var token = kind switch
        {
            "missing tenant claim" => app.Issuer.CreateToken("mallory", tenant: null),
            "bad signature" => app.Issuer.CreateToken("mallory", "acme", signingKey: OidcIssuer.NewKey()),
            "wrong issuer" => app.Issuer.CreateToken("mallory", "acme", issuer: "https://evil.example"),
            "wrong audience" => app.Issuer.CreateToken("mallory", "acme", audience: "someone-else"),
            "expired" => app.Issuer.CreateToken("mallory", "acme", expires: DateTimeOffset.UtcNow.AddMinutes(-5)),
            "alg none" => app.Issuer.CreateUnsignedToken("mallory", "acme"),
            _ => "not-a-jwt",
        };
        using var client = app.ClientWithToken(token);

        var response = await client.GetAsync("/v1/me");

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(401, problem.GetProperty("status").GetInt32());
        Assert.Contains(expectedWord, problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.True(response.Headers.WwwAuthenticate.Count > 0);
    }

    // Issue 16, finding 6: in OIDC mode any algorithm the key could verify was accepted (RS384/RS512 with the
    // issuer's RSA key); only the configured ones (RS256, ES256, PS256 by default) are.
    [Theory]
    [InlineData(SecurityAlgorithms.RsaSha384)]
    [InlineData(SecurityAlgorithms.RsaSha512)]
    [InlineData(SecurityAlgorithms.RsaSsaPssSha512)]
    public async Task Token_signed_with_an_algorithm_outside_the_pinned_list_is_401(string algorithm)
    {
        using var client = app.ClientWithToken(app.Issuer.CreateToken("alg-user", "acme", algorithm: algorithm));

        var problem = await (await client.GetAsync("/v1/me")).ProblemAsync(HttpStatusCode.Unauthorized);

        Assert.Contains("algorithm", problem.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
    }

    [Theory]
    [InlineData(SecurityAlgorithms.RsaSha256)]
    [InlineData(SecurityAlgorithms.RsaSsaPssSha256)]
    public async Task Token_signed_with_a_pinned_algorithm_is_accepted(string algorithm)
    {
        using var client = app.ClientWithToken(app.Issuer.CreateToken("alg-user", "acme", algorithm: algorithm));

        await (await client.GetAsync("/v1/me")).JsonAsync(HttpStatusCode.OK);
    }

    // typ is checked when the issuer sets it: an access token (at+jwt, or plain JWT) passes, a token of another kind
    // signed by the same issuer (a logout token, a security event) does not; a token without typ passes.
    [Theory]
    [InlineData("at+jwt", HttpStatusCode.OK)]
    [InlineData("application/at+jwt", HttpStatusCode.OK)]
    [InlineData("JWT", HttpStatusCode.OK)]
    [InlineData("logout+jwt", HttpStatusCode.Unauthorized)]
    [InlineData("secevent+jwt", HttpStatusCode.Unauthorized)]
    public async Task Token_type_is_checked_when_set(string type, HttpStatusCode expected)
    {
        using var client = app.ClientWithToken(app.Issuer.CreateToken("typ-user", "acme", tokenType: type));

        var response = await client.GetAsync("/v1/me");

        Assert.Equal(expected, response.StatusCode);
        if (expected == HttpStatusCode.Unauthorized)
        {
            Assert.Contains("type", (await response.ProblemAsync(HttpStatusCode.Unauthorized)).GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
        }
    }

    [Fact]
    public async Task Token_without_typ_is_accepted()
    {
        using var client = app.ClientWithToken(app.Issuer.CreateTokenWithHeader("""{"alg":"RS256"}""", "no-typ", "acme"));

        await (await client.GetAsync("/v1/me")).JsonAsync(HttpStatusCode.OK);
    }

    [Fact]
    public async Task No_token_gets_401_problem()
    {
        using var client = app.CreateClient();

        var response = await client.GetAsync("/v1/me");

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Contains("bearer token is required", problem.GetProperty("detail").GetString());
    }

    [Fact]
    public async Task Rotated_signing_key_is_fetched_from_jwks()
    {
        using (var before = app.ClientFor("dave", "acme"))
        {
            (await before.GetAsync("/v1/me")).EnsureSuccessStatusCode();
        }

        app.Issuer.RotateKey();
        using var after = app.ClientFor("dave", "acme");

        // An unknown key id makes the server refetch the JWKS (at most once per KeyRefreshInterval, 1 s here);
        // the refresh runs in the background, so the new key is honoured within a few seconds.
        var status = HttpStatusCode.Unauthorized;
        for (var attempt = 0; attempt < 50 && status != HttpStatusCode.OK; attempt++)
        {
            status = (await after.GetAsync("/v1/me")).StatusCode;
            await Task.Delay(status == HttpStatusCode.OK ? 0 : 200);
        }

        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    public async Task Development_token_endpoint_does_not_exist_outside_development()
    {
        using var client = app.CreateClient();

        var response = await client.PostAsJsonAsync("/dev/token", new { user = "eve", tenant = "acme" });

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        using var authenticated = app.ClientFor("eve", "acme", roles: [HarnessRoles.Admin]);
        Assert.Equal(HttpStatusCode.NotFound, (await authenticated.PostAsJsonAsync("/dev/token", new { user = "eve" })).StatusCode);
    }
}

public sealed class DevelopmentIssuerKeyTests
{
    // The key was written with the umask's mode (0644) and chmod'ed afterwards; now it is created 0600.
    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void The_development_key_is_created_owner_only_and_never_overwritten()
    {
        var directory = Directory.CreateTempSubdirectory("dev-key-");
        try
        {
            var path = Path.Combine(directory.FullName, "dev-issuer-key.pem");

            DevelopmentIssuer.WriteOwnerOnly(path, "first");

            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            Assert.Throws<IOException>(() => DevelopmentIssuer.WriteOwnerOnly(path, "second"));
            Assert.Equal("first", File.ReadAllText(path));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
