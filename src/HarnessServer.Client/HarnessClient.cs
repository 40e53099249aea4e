using System.Text.Json;
using System.Text.Json.Serialization;

namespace HarnessServer.Client;

/// <summary>
/// The typed client of HarnessServer's HTTP API, generated at build from <c>openapi.json</c> (the document the server
/// serves). Give it an <see cref="HttpClient"/> whose <see cref="HttpClient.BaseAddress"/> is the server and whose
/// requests carry the bearer token.
/// </summary>
public partial class HarnessClient
{
    // The server writes enums as snake_case strings and leaves nulls out.
    static partial void UpdateJsonSerializerSettings(JsonSerializerOptions settings)
    {
        settings.PropertyNameCaseInsensitive = true;
        settings.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower));
    }
}
