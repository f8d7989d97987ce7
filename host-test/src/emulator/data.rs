//! Seeded demo data: one organization, its business units and users. Later
//! record stores build on these ids, so they are fixed and documented.

/// The emulated organization (environment).
pub const ORGANIZATION_ID: &str = "9c0d1e2f-cccc-4d5e-8f90-a1b2c3d4e5f6";
/// The Entra tenant the emulator's identity endpoint belongs to.
pub const TENANT_ID: &str = "11111111-2222-3333-4444-555555555555";
/// The seeded confidential app used with client credentials (the identity
/// endpoint's app registration, and the `applicationid` of [`USER_APP`]).
pub const CLIENT_CREDENTIALS_APP_ID: &str = "aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb";

#[derive(Debug, Clone)]
pub struct BusinessUnit {
    pub id: &'static str,
    pub name: &'static str,
    pub parent: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct SystemUser {
    /// `systemuserid`.
    pub id: &'static str,
    /// Entra object id (`azureactivedirectoryobjectid`), for `CallerObjectId`.
    pub entra_object_id: &'static str,
    pub fullname: &'static str,
    pub domainname: &'static str,
    pub business_unit: &'static str,
    /// Application users have the app's client id.
    pub application_id: Option<&'static str>,
    /// Holds the System Administrator role: the only role with
    /// prvBypassCustomBusinessLogic by default ("Bypass custom Dataverse
    /// logic").
    pub system_administrator: bool,
}

/// Organization, business units and users.
#[derive(Debug, Clone)]
pub struct Directory {
    pub organization_id: &'static str,
    pub organization_name: &'static str,
    pub business_units: Vec<BusinessUnit>,
    pub users: Vec<SystemUser>,
    /// How many synthetic records `--records N` asked for (used by the
    /// record store once it exists).
    pub generated_records: usize,
}

pub const ROOT_BU: &str = "1b2c3d4e-aaaa-ef11-8eef-000d3a5b1c2d";
pub const SALES_BU: &str = "1b2c3d4e-bbbb-ef11-8eef-000d3a5b1c2d";
/// The signed-in user of the authorization code flow by default.
pub const USER_ANA: &str = "5e6f7a8b-bbbb-ef11-8eef-000d3a5b1c2d";
pub const USER_BEN: &str = "5e6f7a8b-cccc-ef11-8eef-000d3a5b1c2d";
pub const USER_CARA: &str = "5e6f7a8b-dddd-ef11-8eef-000d3a5b1c2d";
/// The application user of the seeded client-credentials app.
pub const USER_APP: &str = "5e6f7a8b-eeee-ef11-8eef-000d3a5b1c2d";

impl Directory {
    pub fn seeded(generated_records: usize) -> Self {
        Directory {
            organization_id: ORGANIZATION_ID,
            organization_name: "contoso",
            business_units: vec![
                BusinessUnit {
                    id: ROOT_BU,
                    name: "contoso",
                    parent: None,
                },
                BusinessUnit {
                    id: SALES_BU,
                    name: "Sales",
                    parent: Some(ROOT_BU),
                },
            ],
            users: vec![
                SystemUser {
                    id: USER_ANA,
                    entra_object_id: "a0a0a0a0-0000-4000-8000-00000000a0a0",
                    fullname: "Ana Ruiz",
                    domainname: "ana@contoso.onmicrosoft.com",
                    business_unit: ROOT_BU,
                    application_id: None,
                    system_administrator: true,
                },
                SystemUser {
                    id: USER_BEN,
                    entra_object_id: "b0b0b0b0-0000-4000-8000-00000000b0b0",
                    fullname: "Ben Ode",
                    domainname: "ben@contoso.onmicrosoft.com",
                    business_unit: SALES_BU,
                    application_id: None,
                    system_administrator: false,
                },
                SystemUser {
                    id: USER_CARA,
                    entra_object_id: "c0c0c0c0-0000-4000-8000-00000000c0c0",
                    fullname: "Cara Lind",
                    domainname: "cara@contoso.onmicrosoft.com",
                    business_unit: SALES_BU,
                    application_id: None,
                    system_administrator: false,
                },
                SystemUser {
                    id: USER_APP,
                    entra_object_id: "e0e0e0e0-0000-4000-8000-00000000e0e0",
                    fullname: "# d365-connector (application user)",
                    domainname: "d365connector@contoso.onmicrosoft.com",
                    business_unit: ROOT_BU,
                    application_id: Some(CLIENT_CREDENTIALS_APP_ID),
                    system_administrator: true,
                },
            ],
            generated_records,
        }
    }

    pub fn user(&self, id: &str) -> Option<&SystemUser> {
        self.users.iter().find(|u| u.id.eq_ignore_ascii_case(id))
    }

    pub fn user_by_domain(&self, domainname: &str) -> Option<&SystemUser> {
        self.users
            .iter()
            .find(|u| u.domainname.eq_ignore_ascii_case(domainname))
    }
}
