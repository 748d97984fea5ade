using System.Diagnostics.CodeAnalysis;

// RS0026 guards against overloads that differ only in optional parameters, which can turn a call ambiguous when
// one is added later. Here the observer is a required (nullable) parameter of the second overload, so
// GenerateAsync(request) and GenerateAsync(request, token) always bind to the first, as in the BCL's
// "(..., CancellationToken = default)" pairs. Both overloads are part of the API as it was first published.
[assembly: SuppressMessage("ApiDesign", "RS0026:Do not add multiple public overloads with optional parameters", Justification = "Observer overload; no ambiguity (see above).", Scope = "member", Target = "~M:RequestMigration.Routing.PushRouter`2.GenerateAsync(`0,System.Threading.CancellationToken)~System.Collections.Generic.IAsyncEnumerable{RequestMigration.Annotated{`1}}")]
[assembly: SuppressMessage("ApiDesign", "RS0026:Do not add multiple public overloads with optional parameters", Justification = "Observer overload; no ambiguity (see above).", Scope = "member", Target = "~M:RequestMigration.Routing.PushRouter`2.GenerateAsync(`0,RequestMigration.Routing.IAttemptObserver,System.Threading.CancellationToken)~System.Collections.Generic.IAsyncEnumerable{RequestMigration.Annotated{`1}}")]
