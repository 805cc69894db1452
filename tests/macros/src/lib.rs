//! `#[both_backends]`: declares an integration test where it is written and runs it twice,
//! on SQLite and on PostgreSQL.
//!
//! ```ignore
//! /// Checklist 12: …
//! #[both_backends]
//! async fn callback_from_another_tenant_is_refused(app: TestApp) { … }
//! ```
//!
//! becomes the function itself and a module of the same name holding two tests, `…::sqlite`
//! and `…::postgres`. The function takes either `app: TestApp` (a server on a fresh database,
//! started by the harness) or `backend: Backend` (for tests that build their own servers).
//! The PostgreSQL test reports itself skipped when `TEST_DATABASE_URL` is unset, and fails
//! instead when `CONSENTRY_TEST_REQUIRE_POSTGRES=1` (the harness decides both).

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{FnArg, ItemFn, Pat, Type, parse_macro_input, spanned::Spanned};

/// Runs an `async fn name(app: TestApp)` or `async fn name(backend: Backend)` as the tests
/// `name::sqlite` and `name::postgres` (see the crate's documentation).
#[proc_macro_attribute]
pub fn both_backends(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        let args = proc_macro2::TokenStream::from(args);
        return syn::Error::new(args.span(), "#[both_backends] takes no arguments")
            .to_compile_error()
            .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    match expand(&function) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

/// What the test function receives.
enum Takes {
    App,
    Backend,
}

fn takes(function: &ItemFn) -> syn::Result<Takes> {
    let wrong = || {
        syn::Error::new(
            function.sig.span(),
            "#[both_backends] needs `async fn name(app: TestApp)` or `async fn name(backend: Backend)`",
        )
    };
    if function.sig.asyncness.is_none() || function.sig.inputs.len() != 1 {
        return Err(wrong());
    }
    let Some(FnArg::Typed(argument)) = function.sig.inputs.first() else {
        return Err(wrong());
    };
    let (Pat::Ident(_), Type::Path(ty)) = (&*argument.pat, &*argument.ty) else {
        return Err(wrong());
    };
    match ty
        .path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .as_deref()
    {
        Some("TestApp") => Ok(Takes::App),
        Some("Backend") => Ok(Takes::Backend),
        _ => Err(wrong()),
    }
}

fn expand(function: &ItemFn) -> syn::Result<proc_macro2::TokenStream> {
    let takes = takes(function)?;
    let name = &function.sig.ident;
    let run = |backend: &str| {
        let variant = format_ident!("{backend}");
        match takes {
            Takes::Backend => quote! {
                super::#name(::consentry_tests::Backend::#variant).await;
            },
            Takes::App if backend == "Sqlite" => quote! {
                let app = ::consentry_tests::spawn_app(::consentry_tests::Backend::Sqlite)
                    .await
                    .expect("SQLite is always available");
                super::#name(app).await;
            },
            Takes::App => quote! {
                if let Some(app) = ::consentry_tests::spawn_app(::consentry_tests::Backend::#variant).await {
                    super::#name(app).await;
                }
            },
        }
    };
    let (sqlite, postgres) = (run("Sqlite"), run("Postgres"));
    Ok(quote! {
        #function

        mod #name {
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                #sqlite
            }

            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                #postgres
            }
        }
    })
}
