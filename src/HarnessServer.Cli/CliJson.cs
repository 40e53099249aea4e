using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace HarnessServer.Cli;

/// <summary>The JSON that <c>--json</c> prints: the server's own shapes (camelCase, snake_case enums), indented.</summary>
internal static class CliJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public static void Write(TextWriter output, object? value) => output.WriteLine(JsonSerializer.Serialize(value, Options));
}
