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
