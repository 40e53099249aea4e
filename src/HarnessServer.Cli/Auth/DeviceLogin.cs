using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace HarnessServer.Cli.Auth;

/// <summary>
/// The OAuth 2.0 device authorization grant (RFC 8628) against the issuer's discovery document: ask for a user code,
/// show where to enter it, poll the token endpoint at the interval the issuer sets (slower on <c>slow_down</c>) until
/// the user approves, denies, or the code expires.
/// </summary>
internal sealed class DeviceLogin(HttpClient http, TextWriter output, TimeProvider time)
{
    private const string DeviceGrant = "urn:ietf:params:oauth:grant-type:device_code";

    public async Task<(string AccessToken, DateTimeOffset ExpiresAt)> SignInAsync(Uri issuer, string clientId, string scope, CancellationToken ct)
    {
        var discovery = await http.GetFromJsonAsync<Discovery>(new Uri(issuer.ToString().TrimEnd('/') + "/.well-known/openid-configuration"), ct)
            ?? throw new LoginException($"{issuer} has no OpenID Connect discovery document.");
        if (discovery.DeviceAuthorizationEndpoint is null || discovery.TokenEndpoint is null)
        {
            throw new LoginException($"{issuer} does not offer the device authorization grant (no device_authorization_endpoint).");
        }

        using var authorize = await http.PostAsync(discovery.DeviceAuthorizationEndpoint,
            new FormUrlEncodedContent(new Dictionary<string, string> { ["client_id"] = clientId, ["scope"] = scope }), ct);
        var device = await ReadAsync<DeviceAuthorization>(authorize, ct);
        if (!authorize.IsSuccessStatusCode || device?.DeviceCode is null || device.UserCode is null)
        {
            throw new LoginException($"The issuer refused the device authorization: {await authorize.Content.ReadAsStringAsync(ct)}");
        }

        output.WriteLine($"To sign in, open {device.VerificationUriComplete ?? device.VerificationUri} and enter the code {device.UserCode}.");
        var interval = TimeSpan.FromSeconds(Math.Max(1, device.Interval ?? 5));
        var deadline = time.GetUtcNow().AddSeconds(device.ExpiresIn ?? 600);
        while (time.GetUtcNow() < deadline)
        {
            await Task.Delay(interval, time, ct);
            using var poll = await http.PostAsync(discovery.TokenEndpoint, new FormUrlEncodedContent(new Dictionary<string, string>
            {
                ["grant_type"] = DeviceGrant,
                ["device_code"] = device.DeviceCode,
                ["client_id"] = clientId,
            }), ct);
            var token = await ReadAsync<TokenAnswer>(poll, ct);
            if (poll.IsSuccessStatusCode && token?.AccessToken is { } access)
            {
                return (access, time.GetUtcNow().AddSeconds(token.ExpiresIn ?? 3600));
            }

            switch (token?.Error)
            {
                case "authorization_pending":
                    continue;
                case "slow_down":
                    interval += TimeSpan.FromSeconds(5);
                    continue;
                case "access_denied":
                    throw new LoginException("The sign-in was denied.");
                case "expired_token":
                    throw new LoginException("The code expired before it was entered; run harness login again.");
                default:
                    throw new LoginException($"The issuer's token endpoint answered {(int)poll.StatusCode}: {token?.Error ?? "no error code"} {token?.ErrorDescription}");
            }
        }

        throw new LoginException("The code expired before it was entered; run harness login again.");
    }

    private static async Task<T?> ReadAsync<T>(HttpResponseMessage response, CancellationToken ct)
    {
        try
        {
            return await response.Content.ReadFromJsonAsync<T>(ct);
        }
        catch (JsonException)
        {
            return default;
        }
    }

    private sealed record Discovery(
        [property: JsonPropertyName("device_authorization_endpoint")] Uri? DeviceAuthorizationEndpoint,
        [property: JsonPropertyName("token_endpoint")] Uri? TokenEndpoint);

    private sealed record DeviceAuthorization(
        [property: JsonPropertyName("device_code")] string? DeviceCode,
        [property: JsonPropertyName("user_code")] string? UserCode,
        [property: JsonPropertyName("verification_uri")] string? VerificationUri,
        [property: JsonPropertyName("verification_uri_complete")] string? VerificationUriComplete,
        [property: JsonPropertyName("expires_in")] int? ExpiresIn,
        [property: JsonPropertyName("interval")] int? Interval);

    private sealed record TokenAnswer(
        [property: JsonPropertyName("access_token")] string? AccessToken,
        [property: JsonPropertyName("expires_in")] int? ExpiresIn,
        [property: JsonPropertyName("error")] string? Error,
        [property: JsonPropertyName("error_description")] string? ErrorDescription);
}

/// <summary>A sign-in that did not complete, with what the user can do about it.</summary>
internal sealed class LoginException(string message) : Exception(message);
