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
