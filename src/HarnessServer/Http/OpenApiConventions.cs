using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace HarnessServer.Http;

/// <summary>
/// What the generated OpenAPI document says beyond the endpoints' own metadata, so generated clients and the API
/// reference know what every route needs and answers: the bearer scheme (and the issuer's OpenID Connect discovery)
/// applied to every protected operation, the problem responses the server gives (401, 403, 400 where there is input,
/// 404 where a path names something, 503 where the database or the audit trail is needed), tag descriptions, and a
/// server URL without a trailing slash.
/// </summary>
internal static class OpenApiConventions
{
    public const string BearerScheme = "bearer";
    public const string OidcScheme = "oidc";
    private const string ProblemSchema = "ProblemDetails";
    private const string ProblemMediaType = "application/problem+json";

    private static readonly Dictionary<string, string> TagDescriptions = new(StringComparer.Ordinal)
    {
        ["Identity"] = "The caller as the token says, and (Development only) a token issuer.",
        ["Sessions"] = "Sessions with their own workspace, their tool calls through the pipeline, pause, resume and the live event stream.",
        ["Agents"] = "Agent turns over the configured model, their history, usage, checkpoints and rollback, and the tenant's agent settings.",
        ["Approvals"] = "Calls held by an ask decision, for approvers of the requester's teams (and admins) to decide.",
        ["Policies"] = "The tenant's policy levels (org, teams, users): stored versions, history, the effective matrix and simulation.",
        ["Tools"] = "The tenant's tool registry and the http.fetch allow-list.",
        ["Audit"] = "The tenant's hash-chained audit trail: query, export, verification and signed checkpoints.",
        ["Memory"] = "Namespaced memory: writes and searches (as the memory tools through the pipeline), listings, deletes, held requests.",
    };

    public static void Configure(OpenApiOptions options, IConfiguration configuration)
    {
        options.AddDocumentTransformer((document, _, _) =>
        {
            Describe(document, configuration["Authentication:Authority"]);
            return Task.CompletedTask;
        });
        options.AddOperationTransformer((operation, context, _) =>
        {
            Annotate(operation, context);
            return Task.CompletedTask;
        });
        options.AddSchemaTransformer((schema, context, _) =>
        {
            Type(schema, context);
            return Task.CompletedTask;
        });
    }

    // What generated clients type fields by. Strings pass through StorableStringConverter, whose custom converter
    // hides their type from the generator (it wrote {} and clients typed them object). Numbers are read from JSON
    // strings too (the web defaults), which the generator wrote as ["integer","string"] with a digits pattern; the
    // document promises numbers, which is what the server writes.
    private static void Type(OpenApiSchema schema, OpenApiSchemaTransformerContext context)
    {
        if (context.JsonTypeInfo.Type == typeof(string) && schema.Type is null)
        {
            schema.Type = JsonSchemaType.String | (context.JsonPropertyInfo is { IsGetNullable: true } ? JsonSchemaType.Null : 0);
            return;
        }

        // The same hidden type left string arrays without items, which clients typed as arrays of anything.
        if (context.JsonTypeInfo.ElementType == typeof(string) && schema.Type is { } array && (array & JsonSchemaType.Array) != 0 && schema.Items is null)
        {
            schema.Items = new OpenApiSchema { Type = JsonSchemaType.String };
            return;
        }

        if (schema.Type is { } type && (type & (JsonSchemaType.Integer | JsonSchemaType.Number)) != 0 && (type & JsonSchemaType.String) != 0)
        {
            schema.Type = type & ~JsonSchemaType.String;
            schema.Pattern = null;
        }
    }

    private static void Describe(OpenApiDocument document, string? authority)
    {
        document.Info.Description ??= "The harness of AI agents: every tool call validated, decided by policy, approved when asked, sandboxed and audited.";
        foreach (var server in document.Servers ?? [])
        {
            server.Url = server.Url?.TrimEnd('/');
        }

        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>(StringComparer.Ordinal);
        document.Components.SecuritySchemes[BearerScheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "bearer",
            BearerFormat = "JWT",
            Description = "An access token of the configured OpenID Connect issuer, for this server's audience.",
        };
        if (Uri.TryCreate(authority, UriKind.Absolute, out var issuer))
        {
            document.Components.SecuritySchemes[OidcScheme] = new OpenApiSecurityScheme
            {
                Type = SecuritySchemeType.OpenIdConnect,
                OpenIdConnectUrl = new Uri(issuer.ToString().TrimEnd('/') + "/.well-known/openid-configuration"),
                Description = "Where the bearer tokens come from.",
            };

            // The same token, described by where it comes from: a client that discovers the issuer can use this one.
            foreach (var operation in (document.Paths ?? []).Values.SelectMany(p => p.Operations?.Values ?? Enumerable.Empty<OpenApiOperation>()))
            {
                if (operation.Security is { Count: > 0 } security)
                {
                    security.Add(new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(OidcScheme, document)] = [] });
                }
            }
        }

        document.Components.Schemas ??= new Dictionary<string, IOpenApiSchema>(StringComparer.Ordinal);
        document.Components.Schemas.TryAdd(ProblemSchema, new OpenApiSchema
        {
            Type = JsonSchemaType.Object,
            Description = "RFC 7807 problem details; code is the stable machine-readable reason.",
            Properties = new Dictionary<string, IOpenApiSchema>(StringComparer.Ordinal)
            {
                ["type"] = new OpenApiSchema { Type = JsonSchemaType.String },
                ["title"] = new OpenApiSchema { Type = JsonSchemaType.String },
                ["status"] = new OpenApiSchema { Type = JsonSchemaType.Integer },
                ["detail"] = new OpenApiSchema { Type = JsonSchemaType.String },
                ["instance"] = new OpenApiSchema { Type = JsonSchemaType.String },
                ["code"] = new OpenApiSchema { Type = JsonSchemaType.String },
                ["traceId"] = new OpenApiSchema { Type = JsonSchemaType.String },
            },
        });

        document.Tags ??= new HashSet<OpenApiTag>();
        foreach (var (name, description) in TagDescriptions)
        {
            if (document.Tags.FirstOrDefault(t => t.Name == name) is { } tag)
            {
                tag.Description = description;
            }
            else
            {
                document.Tags.Add(new OpenApiTag { Name = name, Description = description });
            }
        }
    }

    private static void Annotate(OpenApiOperation operation, OpenApiOperationTransformerContext context)
    {
        var metadata = context.Description.ActionDescriptor.EndpointMetadata;
        var isProtected = metadata.OfType<IAuthorizeData>().Any() && !metadata.OfType<IAllowAnonymous>().Any();
        operation.Responses ??= new OpenApiResponses();
        if (!isProtected)
        {
            // Explicitly open: health, the document itself and the development token issuer.
            operation.Security = [];
            return;
        }

        operation.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerScheme, context.Document)] = [] }];

        Problem(operation, context, "401", "No bearer token, or one that is expired, unsigned, of another issuer or audience (unauthenticated).");
        Problem(operation, context, "403", "The caller's roles do not allow the route, or the policy denies what it asks.");
        var parameters = context.Description.ParameterDescriptions;
        if (parameters.Any(p => p.Source.Id is "Body" or "Query") || context.Description.HttpMethod is "POST" or "PUT")
        {
            Problem(operation, context, "400", "The body or a parameter is invalid; detail and code say which.");
        }

        if (parameters.Any(p => p.Source.Id == "Path"))
        {
            Problem(operation, context, "404", "What the path names does not exist for this caller (another tenant's or user's things included).");
        }

        Problem(operation, context, "503", "The database or the audit trail is unavailable; nothing was done. Retry later.");
    }

    private static void Problem(OpenApiOperation operation, OpenApiOperationTransformerContext context, string status, string description)
    {
        if (operation.Responses!.ContainsKey(status))
        {
            return;
        }

        operation.Responses[status] = new OpenApiResponse
        {
            Description = description,
            Content = new Dictionary<string, OpenApiMediaType>(StringComparer.Ordinal)
            {
                [ProblemMediaType] = new OpenApiMediaType { Schema = new OpenApiSchemaReference(ProblemSchema, context.Document) },
            },
        };
    }
}
