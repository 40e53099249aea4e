namespace HarnessServer.Http;

/// <summary>
/// Why this request was not authenticated, recorded by the authentication handler and read by whatever writes the
/// 401 (its challenge, or the empty-response problem writer), so both say the same precise thing without the token.
/// </summary>
internal static class UnauthenticatedReason
{
    private const string Key = "harness.auth-failure";

    public static void Record(HttpContext context, string reason) => context.Items[Key] = reason;

    public static bool IsRecorded(HttpContext context) => context.Items.ContainsKey(Key);

    public static string Describe(HttpContext context) =>
        context.Items[Key] as string
        ?? (context.Request.Headers.Authorization.Count == 0
            ? "A bearer token is required: send 'Authorization: Bearer <token>'."
            : "The bearer token was not accepted.");
}
