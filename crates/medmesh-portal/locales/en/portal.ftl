# The portal's English messages. Every id here must be in every other catalog too
# (a test checks). Arguments are in { $braces }.
product = medmesh
layout-skip = Skip to content
layout-nav = Main
layout-sign-out = Sign out
layout-signed-in-as = Signed in as

nav-home = Home
nav-record = My record
nav-sharing = Sharing
nav-my-data = My data
nav-documents = Documents
nav-access-log = Access log
nav-sessions = Sessions

problem-not-found = Not found
problem-not-found-detail = There is nothing here for you. If you followed a link, it may have expired.
problem-wrong-audience = Not for this account
problem-wrong-audience-detail = This page is for another kind of account.
problem-unavailable = Not available right now
problem-unavailable-detail = The node could not answer. Please try again in a moment.

mydata-title = My data
mydata-export = Download my record
mydata-export-intro = Your whole record as one FHIR R4 Bundle (JSON), which other health apps and services can read. The download is made for you now and is not kept on the node.
mydata-export-button = Download my record (FHIR JSON)
mydata-research = Research use
mydata-research-legend = May researchers use your data, without your name?
mydata-research-in = Yes, my data may be used for research
mydata-research-out = No, my data must not be used for research
mydata-research-save = Save my choice
mydata-research-is-in = You allowed research use on { $date }.
mydata-research-is-out = You refused research use on { $date }.
mydata-research-never = You have not chosen yet: your data is not used for research.
problem-forbidden = This form has expired
problem-forbidden-detail = Go back, reload the page and try again.
problem-bad-input = This choice is not on offer
problem-bad-input-detail = Go back and choose one of the options shown.

home-title = Home
home-greeting = Welcome, { $name }.
home-results = New results
home-results-none = No results yet.
home-results-more = All results and trends
home-documents = Recent documents
home-documents-none = No documents yet.
home-documents-more = All documents
home-document = Document
home-accesses = Recent accesses to your record
home-accesses-none = Nobody has accessed your record yet.
home-accesses-more = The full access log, verified

record-title = My record
record-conditions = Conditions
record-conditions-none = No conditions recorded.
record-medications = Medications
record-medications-none = No medications recorded.
record-allergies = Allergies
record-allergies-none = No allergies recorded.
record-immunizations = Immunizations
record-immunizations-none = No immunizations recorded.
record-encounters = Visits
record-encounters-none = No visits recorded.
record-encounter = Visit
record-results = Results and vital signs
record-results-none = No results recorded.
record-results-count = { $count ->
    [one] { $count } result
   *[other] { $count } results
}
record-value = Value
record-date = Date
record-range = Reference range
record-range-typical = Typical adult range
record-values = All values
record-latest = Latest

chart-title = Trend of { $name }
chart-description = { $count } values from { $first } to { $last }; { $abnormal ->
    [0] none outside the reference range.
    [one] one outside the reference range.
   *[other] { $abnormal } outside the reference range.
}

sharing-title = Sharing
sharing-intro = These people and organizations can see your record, and why. A change takes effect on the next request.
sharing-now = Who can see your record now
sharing-past = Access that has ended
sharing-none = Nobody.
sharing-who = Who
sharing-why = Why
sharing-since = Since
sharing-until = Until
sharing-open = No end date
sharing-emergency = Emergency access
sharing-unnamed = { $reference }
why-care-team = Member of your care team
why-general-practitioner = Your general practitioner
why-referral = You were referred to them
why-encounter = A visit with them
why-consent = You gave your consent
why-shared = One of your sharing rules
why-break-glass = Declared an emergency

flag-normal = Normal
flag-low = Low
flag-high = High
flag-abnormal = Abnormal

status-active = Active
status-recurrence = Recurring
status-relapse = Relapsed
status-inactive = Inactive
status-remission = In remission
status-resolved = Resolved
status-completed = Completed
status-stopped = Stopped
status-on-hold = On hold
status-cancelled = Cancelled
status-entered-in-error = Entered in error
status-not-done = Not done
status-draft = Draft
status-intended = Intended
status-unknown = Unknown

criticality-low = Low risk
criticality-high = High risk
criticality-unable-to-assess = Risk not assessed

action-read = Read your record
action-vread = Read a past version
action-search = Searched your record
action-create = Added to your record
action-update = Updated your record
action-delete = Deleted from your record
action-read-audit-log = Read your access log
action-export = Exported your record
action-everything = Read your whole record

who-you = You
who-account = { $name } ({ $role })
who-service = Service “{ $name }”
role-patient = patient
role-practitioner = practitioner
role-org-admin = organization administrator
role-node-admin = node administrator
role-researcher = researcher
action-other = Accessed your record
action-login = Signed in

datetime-format = { $date }, { $time }
date-format = { $day } { $month } { $year }
month-1 = Jan
month-2 = Feb
month-3 = Mar
month-4 = Apr
month-5 = May
month-6 = Jun
month-7 = Jul
month-8 = Aug
month-9 = Sep
month-10 = Oct
month-11 = Nov
month-12 = Dec

## Navigation (clinicians, admins, everyone)
nav-account = Account
nav-patients = Patients
nav-referrals = Referrals
nav-admin-users = Users
nav-admin-clients = Apps
nav-admin-break-glass = Emergency reviews
nav-admin-keys = Keys and log

language-name = English

## Record: documents
record-documents = Documents
record-documents-none = No documents.
record-document = Document

## Account
account-title = Account
account-language = Language
account-language-label = Show pages in
account-save = Save
account-two-factor = Two-step sign-in
account-two-factor-off = Two-step sign-in is off. With it on, signing in also asks for a code from an app on your phone.
account-two-factor-start = Turn on two-step sign-in
account-two-factor-scan = Scan this code with an authenticator app, then type the six-digit code it shows.
account-two-factor-qr = QR code for your authenticator app
account-two-factor-manual = Cannot scan? Enter this in the app instead
account-two-factor-code = Six-digit code
account-two-factor-confirm = Confirm
account-two-factor-wrong = That code was not right. Start again to get a new QR code.
account-two-factor-restart = Start again
account-two-factor-now-on = Two-step sign-in is now on.
account-recovery-once = These recovery codes let you in if you lose your phone. Keep them somewhere safe: they are shown only this once, and each works once.
account-two-factor-on = Two-step sign-in is on.
account-two-factor-required = Two-step sign-in is on, and required for your account.
account-link = Link your record
account-link-intro = Your clinic can give you a one-time code that links this account to your health record.
account-link-code = One-time code
account-link-submit = Link my record
account-link-wrong = That code is not valid, or was already used.
account-sessions = See where you are signed in, and sign out other devices

## Patients (clinicians)
patients-title = My patients
patients-find = Find a patient
patients-name = Name
patients-birthdate = Date of birth
patients-identifier = Identifier (MRN)
patients-search = Search
patients-mine = Patients in your care
patients-results = Search results
patients-none = No patients found among those in your care.
patients-unnamed = (no name on record)

## Emergency access
emergency-title = Emergency access (break-glass)
emergency-intro = For a patient who is not in your care, in an emergency only. Your reason is kept for review, every access is flagged in the patient's log, and the patient is told.
emergency-time-box = { $hours ->
    [one] Access lasts one hour.
   *[other] Access lasts { $hours } hours.
}
emergency-patient = The patient's record number
emergency-reason = Reason (required)
emergency-declare = Declare an emergency
emergency-banner = Emergency access: every access to this record is flagged, reviewed and shown to the patient. It ends { $until }.

## Chart
chart-write = Add to the record
chart-refer = Refer
chart-restricted = Restricted by the patient's consent
chart-restricted-intro = The patient has not shared these parts of their record with you. They exist only if the patient chose to restrict them; ask the patient if you need them.

## Writing
write-title = Add to the record of { $name }
write-back = Back to the chart
write-observation = A measurement
write-measurement = What was measured
write-value = Value
write-date = Date
write-condition = A condition
write-condition-text = Condition
write-onset = Since
write-allergy = An allergy
write-substance = Substance
write-criticality = How serious
write-note = A note
write-note-title = Title
write-note-text = Note
write-save = Save
write-documents = To upload a signed document, use

## Referrals
refer-title = Refer { $name }
refer-directory = Find a colleague
refer-name = Name
refer-specialty = Specialty
refer-organization = Organization
refer-found = Colleagues found
refer-none = Nobody found.
refer-reason = Reason for the referral
refer-send = Refer to this colleague
referrals-title = Referrals
referrals-incoming = Sent to you
referrals-sent = Sent by you
referrals-none = None.
referrals-from = From
referrals-to = To
referrals-patient = Patient
referrals-when = Sent
referrals-status = Status
referrals-accept = Accept
referrals-accept-note = Accepting opens the patient's record to you, within what the patient's consents allow.
referrals-patient-hidden = (named once you accept)
status-requested = Requested
status-accepted = Accepted
status-rejected = Declined
status-in-progress = In progress

## Sharing: changes
sharing-saved = Saved. It takes effect on the very next request.
sharing-change = Change
sharing-withdraw = Withdraw
sharing-block = Block
sharing-block-what = What to block
sharing-everything = Everything
sharing-referrals = Referrals made for you
sharing-no-referrals = No referrals.
sharing-referral-accept = Agree
sharing-referral-decline = Decline
sharing-give = Give someone access
sharing-find = Find a practitioner or organization
sharing-find-name = Name
sharing-what = What they may see
sharing-sensitive = Also sensitive information about
sharing-until-date = Until (optional)
sharing-grant = Give access
sharing-rule = Share automatically from now on
sharing-rule-laboratory = New lab results
sharing-rule-vital-signs = New vital signs
sharing-rule-set = Share automatically
sharing-next-request = Every change takes effect on the next request anyone makes.

## Data categories
type-Observation = Results and measurements
type-Condition = Conditions
type-MedicationRequest = Medications
type-AllergyIntolerance = Allergies
type-Immunization = Immunizations
type-Encounter = Visits
type-DocumentReference = Documents
label-R = restricted information
label-V = very restricted information
label-PSY = mental health
label-MH = mental health
label-BH = behavioural health
label-SUD = substance use
label-HIV = HIV
label-STD = sexually transmitted infections
label-SEX = sexual health
label-SDV = sexual and domestic violence
label-ETH = alcohol and drug treatment
label-GDIS = genetic disease
label-SICKLE = sickle cell

gender-male = male
gender-female = female
gender-other = other
gender-unknown = sex unknown

analyte-8480-6 = Systolic blood pressure
analyte-8462-4 = Diastolic blood pressure
analyte-8867-4 = Heart rate
analyte-29463-7 = Body weight
analyte-8310-5 = Body temperature
analyte-2339-0 = Glucose
analyte-4548-4 = HbA1c
analyte-2093-3 = Total cholesterol
analyte-38483-4 = Creatinine

## Admin
admin-users-title = Users
admin-practitioners = Practitioners
admin-no-practitioners = No practitioner accounts.
admin-username = User name
admin-practitioner = Practitioner
admin-status = Status
admin-change = Change
admin-verify = Verify
admin-suspend = Suspend
verification-verified = Verified
verification-unverified = Not verified
verification-suspended = Suspended
admin-invite = Invite someone
admin-invite-role = Role
admin-invite-practitioner = Their Practitioner record id (for a practitioner)
admin-invite-make = Make an invitation code
admin-invitation-made = Invitation code
admin-invitation-once = Give this one-time code to the person invited; it is shown only now and lasts seven days.
admin-clients-title = Apps (OAuth clients)
admin-clients = Registered apps
admin-no-clients = No apps registered.
admin-client-name = Name
admin-client-id = Client id
admin-client-kind = Kind
admin-client-redirects = Redirect URIs
admin-client-scope = Scopes allowed
admin-client-created = Registered
admin-client-register = Register an app
admin-client-registered = App registered
admin-client-secret = Client secret
admin-client-secret-once = The secret is shown only now; the node keeps only its hash.
client-kind-public = Public (in the browser or on a phone)
client-kind-confidential = Confidential (on a server)
client-kind-backend = Backend service
admin-break-glass-title = Emergency accesses to review
admin-break-glass-intro = Every emergency (break-glass) access, newest first, with the reason its practitioner gave.
admin-break-glass-none = No emergency accesses.
admin-break-glass-who = Practitioner
admin-break-glass-patient = Patient record
admin-break-glass-declared = Declared
admin-break-glass-until = Until
admin-break-glass-reason = Reason
admin-break-glass-active = In force
admin-reason-gone = (erased with the patient's data)
admin-keys-title = Keys and audit log
admin-keys-at-rest = Encryption at rest
admin-keys-on = Health data is encrypted at rest, under data keys wrapped by a key-encryption key (KEK).
admin-keys-off = Encryption at rest is off on this node.
admin-keys-current = Current KEK
admin-keys-reencryption = Re-encryption
admin-keys-kek = KEK
admin-keys-data-keys = Data keys wrapped
admin-keys-rotate = Rotation is done by the node's operator on the command line:
admin-reencryption = { $state } (row { $row })
admin-reencryption-never = never run
admin-checkpoint = Newest signed checkpoint of the audit log
admin-checkpoint-none = No checkpoint has been signed yet.
admin-checkpoint-size = Entries covered
admin-checkpoint-signed = Signed

## Access log
access-log-title = Who accessed my record
access-log-intro = Every access to your record is written to the node's signed log. This page checks, in your own browser, that the list below is the whole of it: none hidden, none removed, and nothing rewritten since your last visit.
access-log-checking = Checking the log…
access-log-caption = Accesses to your record, newest first
access-log-when = When
access-log-who = Who
access-log-what = What
access-log-why = Why
access-log-outcome = Outcome
access-log-how = How this is checked
access-log-how-detail = The node signs the log's state with its key. The signature also covers, for every patient, how many accesses their log holds and which is the newest. Each access names the one before it, so your browser walks back from the newest to the first and notices any gap. It keeps what it verified and, on your next visit, checks that the node only added to the log since. The node's key:
access-log-verified-one = Verified against the checkpoint of { $asOf }: this is the only access to your record.
access-log-verified-other = Verified against the checkpoint of { $asOf }: these are all { $n } accesses to your record.
access-log-witnessed-one = { $count } independent witness ({ $names }) confirmed that the node shows everyone this same log, checked as of { $since }.
access-log-witnessed-other = { $count } independent witnesses ({ $names }) confirmed that the node shows everyone this same log, checked as of { $since }.
access-log-unwitnessed = No independent witness has confirmed this log yet.
access-log-policy-changed = The node now lists other witnesses than at your first visit; the ones you kept were checked.
access-log-failed = Not verified: { $reason }. Tell the node's operator or your care team.
access-log-key-changed = Not verified: the node now signs its log with another key than at your last visit.
access-log-nothing = Nothing has been logged yet.
access-log-unchecked = The log could not be checked: { $error }
access-log-own-access = your own access, or the node
access-log-emergency = Emergency access
access-log-success = Allowed
access-log-denied = Refused
access-log-failure = Failed
action-login-second-factor = Signed in (second step)
action-break-glass = Declared an emergency
action-withheld = Saw what your consent withholds
action-referral-inbox = Listed their referrals
action-accept-referral = Accepted a referral
chart-invite = Invite to the patient portal
chart-invitation = Portal invitation
chart-invitation-once = Give the patient this one-time code: they create their account with it at /register, and it links the account to this record. It is shown only now and lasts seven days.
home-requests = Requests and notices
home-requests-none = Nothing waiting for you.
home-requests-more = Sharing and referrals
home-referral = You were referred to { $name }
home-referral-from = A referral from { $name }
home-referrals = Referrals waiting for you
home-referrals-none = No referral is waiting.
home-referrals-more = All referrals
home-patients = Find a patient in your care, or declare an emergency access.
home-patients-more = Your patients
home-verification = Practitioners to verify
home-verification-none = Nobody is waiting.
home-emergencies = Emergency accesses in force
notification-break-glass = An emergency access to your record was declared. It is flagged in your access log.
documents-title = Documents
documents-intro = Your documents. A signed one was checked against its author's key when it was uploaded; every opening checks the file against the fingerprint (SHA-256) it was stored with, so a changed file is never delivered.
documents-upload = Upload a signed document
documents-signed = Signed by { $name } on { $when }; the signature was verified, and the file is checked on every opening.
documents-unsigned = Not signed; the file is checked against its fingerprint on every opening.
documents-inline = Held in the record itself.
documents-sealed = Sealed end to end: only the devices it was sealed for can open it.
documents-view = View
documents-download = Download

## Signing in, registration, sessions, signed uploads
sign-in-title = Sign in
sign-in-username = User name
sign-in-password = Password
sign-in-submit = Sign in
sign-in-with = Sign in with { $provider }
sign-in-register = Create an account
sign-in-again = Sign in again
sign-in-throttled = Too many failed attempts; try again in { $seconds } seconds.
sign-in-bad-credentials = The user name or the password is wrong.
sign-in-bad-code = That code is not right, or was already used.
code-title = Enter your code
code-enrol = Your account needs two-step sign-in. Scan this code with an authenticator app, then enter the six digits it shows.
code-by-hand = Or enter this key by hand:
code-enter = Enter the six-digit code from your authenticator app, or one of your recovery codes.
code-label = Code
code-submit = Continue
recovery-title = Save your recovery codes
recovery-text = Each code signs you in once if you lose your authenticator. They are shown only now.
recovery-continue = Continue
register-title = Create your account
register-intro = With the invitation code your clinic gave you, your account is linked to your record. Without one, where this node allows it, you can link your record later.
register-invitation = Invitation code (if you have one)
register-password = Password (at least 12 characters)
register-submit = Create account
register-have-account = I already have an account
register-weak-password = That password is too weak: use at least 12 characters, and not your user name.
register-taken = That user name is taken.
register-bad-invitation = That invitation code is not valid, was already used, or has expired.
register-closed = This node does not allow creating an account without an invitation.
registered-title = Account created
registered-text = Your account is ready. Sign in to continue.
signed-out-title = Signed out
signed-out-text = You are signed out.
sessions-title = Your sessions
sessions-signed-in = Signed in
sessions-browser = Browser
sessions-from = From
sessions-this-one = This one
sessions-end = End
upload-title = Upload a signed document
upload-preparing = Preparing this browser's signing key…
upload-key-ready = This browser signs as { $owner } with key { $key }; its private half cannot be exported.
upload-no-key = No signing key: { $error }
upload-done = Signed and uploaded: Binary/{ $id }
upload-failed = Not uploaded: { $error }
upload-patient = Patient's record id
upload-doc-title = Title (ASCII)
upload-type = Document type (system|code)
upload-file = File
upload-submit = Sign and upload

## The OAuth consent screen
consent-title = { $app } asks for access
consent-intro = Untick anything you do not want to share. The app gets only what stays ticked, and only for as long as its access lasts.
consent-what = What the app may do
consent-patient = Patient (record id)
consent-allow = Allow
consent-deny = Deny
consent-later = You can see and end an app's access from your sessions and sharing pages.
scope-identity = Know who you are
scope-offline = Keep access after you close the app
scope-online = Keep access while you are signed in
scope-launch = Know which patient record is open
scope-read = read
scope-write = add and change
scope-delete = delete
scope-all-types = all record types
scope-patient = one patient's
scope-user = the records you can see:
scope-system = all
scope-data = { $verbs } { $whose } { $what }
scope-other = Other access
