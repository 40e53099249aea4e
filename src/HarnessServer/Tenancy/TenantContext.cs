namespace HarnessServer.Tenancy;

/// <summary>
/// The tenant whose data this scope may see. Set once per request from the token (or once per background unit of
/// work) and read by <see cref="Data.HarnessDbContext"/>'s query filters, so no query can forget it.
/// </summary>
internal sealed class TenantContext
{
    private string? _tenantId;

    /// <summary>The current tenant; throws when none was set, so a missing tenant can never widen a query.</summary>
    public string TenantId => _tenantId ?? throw new InvalidOperationException("No tenant is set for this scope.");

    public bool HasTenant => _tenantId is not null;

    /// <summary>A context already bound to <paramref name="tenantId"/>, for a unit of work outside a request.</summary>
    public static TenantContext For(string tenantId)
    {
        var context = new TenantContext();
        context.Set(tenantId);
        return context;
    }

    public void Set(string tenantId)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(tenantId);
        if (_tenantId is not null && _tenantId != tenantId)
        {
            throw new InvalidOperationException("The tenant of a scope cannot change once set.");
        }

        _tenantId = tenantId;
    }
}
